"""The example Prometheus rules, scrape config and Grafana dashboard in deploy/ fit what the exporter serves."""

from __future__ import annotations

import errno
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml  # PyYAML: a dependency of ctranslate2 (faster-whisper), so always installed

from transcriber import metrics
from transcriber.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ALERTS = DEPLOY / "prometheus" / "transcriber-alerts.yml"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "transcriber-dashboard.json"
METRIC = re.compile(r"\btranscriber_[a-z_]+\b")
DURATION = re.compile(r"^\d+[smhd]$")


def rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    panels = json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


def test_rules_are_well_formed() -> None:
    loaded = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    assert [group["name"] for group in loaded["groups"]] == ["transcriber"]
    names = [rule["alert"] for rule in rules()]
    assert len(names) == len(set(names))
    assert {"TranscriberRecordingFailed", "TranscriberQueueStuck", "TranscriberDatabaseDown"} <= set(names)
    for rule in rules():
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert isinstance(rule["expr"], str) and rule["expr"].strip(), rule["alert"]
        assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]
        assert DURATION.match(rule.get("for", "0s")), rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_the_failed_recording_alert_fires_at_once() -> None:
    [failed] = [rule for rule in rules() if rule["alert"] == "TranscriberRecordingFailed"]
    assert "for" not in failed  # a failed recording needs an operator now, not after a while


def test_deploy_files_name_only_served_metrics() -> None:
    used = {name for rule in rules() for name in METRIC.findall(rule["expr"])}
    used |= {name for expr in dashboard_exprs() for name in METRIC.findall(expr)}
    assert used - metrics.SAMPLE_NAMES == set()
    # The alerts the issue asks for watch these.
    assert {"transcriber_recordings", "transcriber_oldest_due_seconds", "transcriber_database_up"} <= used


def test_every_served_metric_is_on_the_dashboard() -> None:
    used = {name for expr in dashboard_exprs() for name in METRIC.findall(expr)}
    assert metrics.SAMPLE_NAMES - used == set()


def test_dashboard_is_importable() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["uid"] == "transcriber" and dashboard["schemaVersion"] >= 36
    [variable] = dashboard["templating"]["list"]
    assert (variable["name"], variable["type"], variable["query"]) == ("datasource", "datasource", "prometheus")
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    taken: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["type"] in ("stat", "timeseries") and panel["targets"], panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        box = panel["gridPos"]
        assert box["x"] + box["w"] <= 24, panel["title"]
        cells = {(x, y) for x in range(box["x"], box["x"] + box["w"]) for y in range(box["y"], box["y"] + box["h"])}
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def test_scrape_config_matches_the_rules_and_the_default_port() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text(encoding="utf-8"))
    assert [(ALERTS.parent / name).is_file() for name in config["rule_files"]] == [True]
    [job] = config["scrape_configs"]
    [exporter_down] = [rule for rule in rules() if rule["alert"] == "TranscriberExporterDown"]
    assert f'up{{job="{job["job_name"]}"}}' in exporter_down["expr"]
    [target] = job["static_configs"][0]["targets"]
    assert target == f"127.0.0.1:{Settings.model_fields['metrics_port'].default}"


# ---------------------------------------------------------------- what the exporter serves


def sample_names(families: list[Any]) -> set[str]:
    return {sample.name for family in families for sample in family.samples}


def test_sample_names_are_what_a_snapshot_serves() -> None:
    served = sample_names(metrics.families(metrics.Snapshot(recordings={}), now=metrics.utcnow()))
    assert served | {"transcriber_database_up", "transcriber_scrape_duration_seconds"} == metrics.SAMPLE_NAMES


def test_every_label_is_served_and_unknown_ones_are_kept() -> None:
    snapshot = metrics.Snapshot(
        recordings={"failed": 2, "archived": 1},  # "archived": a newer version's status
        attempts={"running": 3, "succeeded": 5},
        failures={"timeout": 4, "gpu_oom": 1},
    )
    served = {
        (sample.name, tuple(sample.labels.values())): sample.value
        for family in metrics.families(snapshot, now=metrics.utcnow())
        for sample in family.samples
        if family.name in ("transcriber_recordings", "transcriber_attempts", "transcriber_failures")
    }
    assert served == {
        **{("transcriber_recordings", (status,)): 0 for status in ("queued", "processing", "completed", "skipped")},
        ("transcriber_recordings", ("failed",)): 2,
        ("transcriber_recordings", ("archived",)): 1,
        # running is left out: a counter of running attempts would fall when one finishes
        **{("transcriber_attempts_total", (outcome,)): 0 for outcome in ("timeout", "failed", "lost")},
        ("transcriber_attempts_total", ("succeeded",)): 5,
        **{("transcriber_failures_total", (cause,)): 0 for cause in metrics.CAUSES if cause != "timeout"},
        ("transcriber_failures_total", ("timeout",)): 4,
        ("transcriber_failures_total", ("gpu_oom",)): 1,
    }


@pytest.mark.parametrize(
    ("address", "code", "expected"),
    [
        ("127.0.0.1", errno.EADDRINUSE, "METRICS_PORT=9808 is in use: nope (another exporter or program listens"),
        ("127.0.0.1", errno.EACCES, "METRICS_PORT=9808 cannot be used: nope (ports below 1024 need privileges"),
        ("10.9.9.9", errno.EADDRNOTAVAIL, "METRICS_ADDRESS=10.9.9.9 cannot be used: nope (give an address of this"),
    ],
)
def test_bind_errors_name_the_setting(address: str, code: int, expected: str) -> None:
    message = metrics.bind_error(address, 9808, OSError(code, "nope"))
    assert message.startswith(expected) and "\n" not in message
