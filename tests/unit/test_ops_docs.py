"""What the README and the operations guide say about the commands is what the parser does."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from transcriber.cli import _parser

ROOT = Path(__file__).parents[2]


def subcommands() -> dict[str, argparse.ArgumentParser]:
    [action] = [a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def takes_json() -> set[str]:
    return {name for name, sub in subcommands().items() if "--json" in sub._option_string_actions}


def claimed(text: str) -> tuple[set[str], set[str]]:
    """The commands a doc says take ``--json``, and those it says do not, from its one sentence about it."""
    sentence = re.search(r"((?:`\w+`(?:, | and ))+`\w+`) take `--json`[^;]*; ((?:`\w+`[^`]*)+) do not", text)
    assert sentence, "the sentence naming the commands that take --json is gone"
    return set(re.findall(r"`(\w+)`", sentence[1])), set(re.findall(r"`(\w+)`", sentence[2]))


def test_readme_names_exactly_the_commands_that_take_json() -> None:
    yes, no = claimed((ROOT / "README.md").read_text(encoding="utf-8"))
    assert yes == takes_json()
    assert no <= set(subcommands()) - takes_json()


def test_operations_guide_names_exactly_the_commands_that_take_json() -> None:
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    assert "Every command takes `--json`" not in text
    yes, no = claimed(text.replace("\n", " "))
    assert yes == takes_json()
    assert no <= set(subcommands()) - takes_json()


def test_every_operator_command_is_in_the_readme_table() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in ("status", "list", "failed", "attempts", "reset", "skip", "export", "transcribe", "watch"):
        assert f"| `transcriber {name}" in readme, name
