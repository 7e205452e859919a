"""The operator commands: sign_webhook, ensure_admin, and runengine (what `make run` starts)."""

from __future__ import annotations

import io
import json
import os
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from events.models import Event

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "trial_started.json"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.django_db
def test_sign_webhook_prints_a_curl_command_the_engine_accepts(client):
    out = io.StringIO()
    call_command("sign_webhook", str(EXAMPLE), "--id", "msg_readme", stdout=out, stderr=io.StringIO())
    argv = shlex.split(out.getvalue())
    assert argv[:5] == ["curl", "-sS", "-i", "-X", "POST"]
    headers = dict(argv[i + 1].split(": ", 1) for i, arg in enumerate(argv) if arg == "-H")
    body = argv[argv.index("--data-binary") + 1]
    response = client.post(
        "/webhooks/provisioning/",
        data=body,
        content_type="application/json",
        headers={k: v for k, v in headers.items() if k != "content-type"},
    )
    assert response.status_code == 202, response.content
    assert Event.objects.get(external_id="msg_readme").type == "trial.started"


def test_sign_webhook_explains_a_missing_secret(settings):
    settings.PROVISIONING_WEBHOOK_SECRET = ""
    with pytest.raises(CommandError, match="PROVISIONING_WEBHOOK_SECRET is not set"):
        call_command("sign_webhook", str(EXAMPLE))


def test_sign_webhook_explains_invalid_json(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{nope")
    with pytest.raises(CommandError, match="not valid JSON"):
        call_command("sign_webhook", str(broken))


@pytest.mark.django_db
def test_ensure_admin_creates_one_superuser_once():
    out = io.StringIO()
    call_command("ensure_admin", stdout=out)
    assert "Log in at http://127.0.0.1:8000/admin/ as admin / " in out.getvalue()
    call_command("ensure_admin", stdout=io.StringIO())
    assert get_user_model().objects.filter(is_superuser=True).count() == 1


def wait_for(url: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not come up")


def wait_for_row(path: Path, sql: str, deadline: float) -> tuple | None:
    while time.monotonic() < deadline:
        with sqlite3.connect(path, timeout=10) as db:
            row = db.execute(sql).fetchone()
        if row is not None:
            return row
        time.sleep(0.3)
    return None


def test_runengine_serves_accepts_a_signed_webhook_and_stops_both_on_ctrl_c(tmp_path):
    """What `make run` does, on a fresh SQLite file with the ORM broker: serve, store, process, stop."""
    port = free_port()
    env = {
        **os.environ,
        "ENV_FILE": "",
        "DEBUG": "on",
        "SECURE_SSL_REDIRECT": "off",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'run.sqlite3'}",
        "Q_BROKER": "orm",
        "PROVISIONING_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    }

    def manage(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    assert manage("migrate", "--no-input").returncode == 0
    engine = subprocess.Popen(
        [sys.executable, "manage.py", "runengine", "--addr", f"127.0.0.1:{port}"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/admin/login/", time.monotonic() + 60)
        sent = manage(
            "sign_webhook", str(EXAMPLE), "--send", "--url", f"http://127.0.0.1:{port}/webhooks/provisioning/"
        )
        assert sent.stdout.startswith("202 "), sent.stdout + sent.stderr
        assert json.loads(sent.stdout[4:])["status"] == "accepted"
        # the task cluster (ORM broker) picks the event up and folds it into a workspace
        assert wait_for_row(
            tmp_path / "run.sqlite3",
            "SELECT status FROM workspaces_workspace WHERE workspace_id = 'ws_8812'",
            time.monotonic() + 60,
        ) == ("trial",)
        engine.send_signal(signal.SIGINT)
        output, _ = engine.communicate(timeout=30)
    finally:
        if engine.poll() is None:
            os.killpg(engine.pid, signal.SIGKILL)
    assert engine.returncode == 0, output
    assert "Stopped web server, task cluster and timer loop." in output
    leftovers = subprocess.run(["pgrep", "-f", f"runserver 127.0.0.1:{port}"], capture_output=True)
    assert leftovers.returncode == 1, "the web server outlived runengine"
