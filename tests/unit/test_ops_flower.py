"""Flower's options after our defaults: what ``celery ... flower`` and ``transcriber flower`` both get."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from transcriber.celery_app import FLOWER_TASKS_COLUMNS, secure_flower
from transcriber.settings import load_settings

FLOWER_DEFAULTS = {
    "address": "",  # Flower's own default: every interface, IPv4 and IPv6
    "unix_socket": "",
    "basic_auth": [],
    "auth": "",
    "tasks_columns": "name,uuid,state,received,runtime,worker",
}


def options(**given: Any) -> SimpleNamespace:
    return SimpleNamespace(**{**FLOWER_DEFAULTS, **given})


def test_nothing_given_binds_loopback_and_refuses_without_auth() -> None:
    opts = options()
    problem = secure_flower(opts, load_settings(), insecure=False)
    assert problem is not None and "FLOWER_BASIC_AUTH" in problem and "--insecure-no-auth" in problem
    assert opts.address == "127.0.0.1"


@pytest.mark.parametrize(
    ("given", "env", "insecure"),
    [
        ({"basic_auth": ["ops:pw"]}, {}, False),  # --basic_auth or FLOWER_BASIC_AUTH in the environment
        ({}, {"FLOWER_BASIC_AUTH": "ops:pw,two:pw2"}, False),  # .env, which Flower itself never reads
        ({"auth": ".*@example\\.com"}, {}, False),  # OAuth
        ({}, {}, True),
    ],
)
def test_any_authentication_or_an_explicit_insecure_start_is_accepted(
    monkeypatch: pytest.MonkeyPatch, given: dict[str, Any], env: dict[str, str], insecure: bool
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    opts = options(**given)
    assert secure_flower(opts, load_settings(), insecure=insecure) is None
    if env:
        assert opts.basic_auth == ["ops:pw", "two:pw2"]


def test_what_the_operator_chose_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWER_BASIC_AUTH", "from:settings")
    opts = options(address="0.0.0.0", basic_auth=["from:argv"], tasks_columns="name,state")
    assert secure_flower(opts, load_settings(), insecure=False) is None
    assert (opts.address, opts.basic_auth, opts.tasks_columns) == ("0.0.0.0", ["from:argv"], "name,state")


def test_a_unix_socket_gets_no_address() -> None:
    opts = options(unix_socket="/run/flower.sock", basic_auth=["a:b"])
    secure_flower(opts, load_settings(), insecure=False)
    assert opts.address == ""


def test_the_task_list_shows_the_file_name_and_the_outcome() -> None:
    opts = options(basic_auth=["a:b"])
    secure_flower(opts, load_settings(), insecure=False)
    assert opts.tasks_columns == FLOWER_TASKS_COLUMNS
    assert {"kwargs", "result"} <= set(FLOWER_TASKS_COLUMNS.split(","))  # kwargs holds {'file': name}


def test_flower_still_has_the_columns_and_defaults_we_set() -> None:
    """Flower's own option table: fails when an upgrade renames what secure_flower sets."""
    from flower.options import default_options
    from flower.views.tasks import TASK_COLUMNS

    assert set(FLOWER_TASKS_COLUMNS.split(",")) <= set(TASK_COLUMNS)
    table = default_options._options  # tornado keys options by their dashed names
    defaults = {name: table[name.replace("_", "-")].default for name in FLOWER_DEFAULTS}
    assert defaults == FLOWER_DEFAULTS
