"""deploy/qcluster_healthcheck.py: restart the cluster on a stale queue heartbeat, and only then.

The script is run for real (a subprocess, `--dry-run`) against a local HTTP server that answers with the
engine's own /healthz responses, rendered by the view from heartbeat rows aged as a wedged cluster leaves them.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.utils import timezone

from failures import tasks as ops_tasks
from failures.models import Heartbeat
from processing import tasks as event_tasks

pytestmark = pytest.mark.django_db

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "qcluster_healthcheck.py"


def load_script():
    spec = importlib.util.spec_from_file_location("qcluster_healthcheck", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def healthz_server() -> Iterator[tuple[str, dict]]:
    """A loopback server replaying one recorded /healthz answer: (url, {"status": int, "body": bytes})."""
    answer: dict = {"status": 200, "body": b"{}"}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(answer["status"])
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(answer["body"])

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/healthz", answer
    finally:
        server.shutdown()
        server.server_close()


def record(client, answer: dict) -> None:
    response = client.get("/healthz")
    answer["status"], answer["body"] = response.status_code, response.content


def run_script(url: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--url", url, "--dry-run", "--restart", "lifecycle-qcluster.service"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


@pytest.fixture(autouse=True)
def fresh_heartbeats():
    ops_tasks.heartbeat()
    event_tasks.sweep()


def test_healthy_engine_no_restart(client, healthz_server):
    # given
    url, answer = healthz_server
    record(client, answer)

    # when
    done = run_script(url)

    # then
    assert done.returncode == 0
    assert done.stdout.startswith("ok: queue heartbeat ok")
    assert "restarting" not in done.stderr


def test_stale_queue_heartbeat_restarts_the_cluster(client, healthz_server):
    # given: the cluster stopped running tasks 4 minutes ago (a wedged cluster: every process alive, idle)
    url, answer = healthz_server
    Heartbeat.objects.filter(name="queue").update(beat_at=timezone.now() - timedelta(seconds=240))
    record(client, answer)
    assert answer["status"] == 503

    # when
    done = run_script(url)

    # then
    assert done.returncode == 0
    assert "restarting lifecycle-qcluster.service: queue heartbeat stale" in done.stderr


def test_stale_heartbeat_restarts_even_when_the_web_tier_does_not_fail_on_it(client, healthz_server, settings):
    # given: web processes run with HEALTH_CHECK_HEARTBEATS=off for their load balancer (200 while stale)
    settings.HEALTH_CHECK_HEARTBEATS = False
    url, answer = healthz_server
    Heartbeat.objects.filter(name="queue").update(beat_at=timezone.now() - timedelta(seconds=240))
    record(client, answer)
    assert answer["status"] == 200

    # when
    done = run_script(url)

    # then
    assert "restarting lifecycle-qcluster.service: queue heartbeat stale" in done.stderr


def test_a_stale_sweeper_alone_is_not_the_clusters_wedge(client, healthz_server):
    # given: only the sweeper's heartbeat is old (the sweep itself fails; restarting would not fix that)
    url, answer = healthz_server
    Heartbeat.objects.filter(name="sweeper").update(beat_at=timezone.now() - timedelta(seconds=900))
    record(client, answer)
    assert answer["status"] == 503

    # when
    done = run_script(url)

    # then
    assert done.returncode == 0
    assert "restarting" not in done.stderr


def test_unreachable_web_tier_is_left_alone():
    # given: nothing listens there
    done = run_script("http://127.0.0.1:9/healthz")

    # then
    assert done.returncode == 0
    assert "unreachable" in done.stderr


def test_a_database_failure_or_a_young_cluster_is_not_restarted():
    script = load_script()
    stale = {"database": "ok", "heartbeats": {"queue": {"status": "stale", "age_seconds": 400}}}

    assert script.decide(stale, age=1000.0, grace=300.0)[0] is True
    assert script.decide(stale, age=None, grace=300.0)[0] is True
    assert script.decide(stale, age=120.0, grace=300.0) == (
        False,
        "queue heartbeat stale, but the cluster started only 120 s ago",
    )
    down = {"database": "error: OperationalError", "heartbeats": {"queue": {"status": "error: OperationalError"}}}
    assert script.decide(down, age=1000.0, grace=300.0)[0] is False
    missing = {"database": "ok", "heartbeats": {"queue": {"status": "missing", "age_seconds": None}}}
    assert script.decide(missing, age=1000.0, grace=300.0)[0] is True


def test_a_nonsense_answer_is_an_error(healthz_server):
    url, answer = healthz_server
    answer["body"] = b'["not", "healthz"]'

    done = run_script(url)

    assert done.returncode == 2
    assert "unexpected answer" in done.stderr
