"""JSON logs: one object a line, carrying the event and workspace ids the failure paths pass."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from events.models import Event
from ops.logging import JsonFormatter
from processing import pipeline
from tests.factories import EventFactory


def record(message: str, *args, exc_info=None, **extra) -> logging.LogRecord:
    logger = logging.getLogger("lifecycle.test")
    return logger.makeRecord(logger.name, logging.WARNING, __file__, 1, message, args, exc_info, extra=extra)


def test_a_line_is_one_json_object_with_the_ids_first():
    line = JsonFormatter().format(record("processing %s failed", "ws_1", workspace_id="ws_1", event_id=42, tries=3))

    data = json.loads(line)
    assert "\n" not in line
    assert data["message"] == "processing ws_1 failed"
    assert data["level"] == "WARNING"
    assert data["logger"] == "lifecycle.test"
    assert data["time"].endswith("+00:00")
    assert (data["event_id"], data["workspace_id"], data["tries"]) == (42, "ws_1", 3)
    assert list(data)[4:6] == ["event_id", "workspace_id"]


def test_exceptions_and_odd_values_are_kept_readable():
    try:
        raise ValueError("bad mrr")
    except ValueError:
        rec = record("oops", exc_info=sys.exc_info(), when=object(), amounts={"mrr": 1})

    data = json.loads(JsonFormatter().format(rec))

    assert data["exc_type"] == "ValueError"
    assert "ValueError: bad mrr" in data["exc_info"]
    assert data["amounts"] == {"mrr": 1}
    assert data["when"].startswith("<object object")


def test_a_request_in_extra_is_its_method_and_path(rf):
    data = json.loads(JsonFormatter().format(record("Not Found", request=rf.get("/x?y=1"), status_code=404)))

    assert data["request"] == {"method": "GET", "path": "/x"}
    assert data["status_code"] == 404


@pytest.mark.django_db
def test_a_processing_failure_is_logged_with_its_workspace_and_events(monkeypatch, caplog):
    def explode(**kwargs):
        raise RuntimeError("boom")

    event = EventFactory(workspace_key="ws_log")
    monkeypatch.setattr(pipeline, "workspace_apply_state", explode)

    with caplog.at_level(logging.ERROR, logger="processing.pipeline"):
        pipeline.workspace_process(workspace_key="ws_log")

    [failure] = [r for r in caplog.records if r.name == "processing.pipeline"]
    data = json.loads(JsonFormatter().format(failure))
    assert data["workspace_id"] == "ws_log"
    assert data["event_ids"] == [event.pk]
    assert "RuntimeError: boom" in data["exc_info"]
    assert Event.objects.get(pk=event.pk).status == Event.Status.ERROR


@pytest.mark.parametrize(
    ("debug", "fmt", "expected"), [("off", None, "json"), ("on", None, "plain"), ("on", "json", "json")]
)
def test_log_format_defaults_to_json_in_production_and_plain_in_debug(debug, fmt, expected):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOG_", "DJANGO_"))}
    env.update(DEBUG=debug, SECRET_KEY="x" * 50, ALLOWED_HOSTS="example.com", PRIVACY_HASH_SALT="s" * 32, ENV_FILE="")
    if fmt:
        env["LOG_FORMAT"] = fmt
    code = "import config.settings as s; print(s.LOG_FORMAT, s.LOGGING['handlers']['console']['formatter'])"
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, check=True)

    assert out.stdout.split() == [expected, expected]


def test_an_unknown_log_format_fails_loudly():
    env = {**os.environ, "DEBUG": "on", "LOG_FORMAT": "xml", "ENV_FILE": ""}
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", "import config.settings"], cwd=root, env=env, capture_output=True, text=True
    )

    assert out.returncode != 0
    assert "LOG_FORMAT must be json or plain" in out.stderr
