"""simulate_provisioning against the engine served over real HTTP."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from django.core.management import CommandError, call_command

from emulators.simulate import simulate_traffic
from events.models import Event
from tests.demo.conftest import REPO, free_port

LIFECYCLE = {"trial.started", "subscription.converted", "workspace.churned"}
OTHER_KEY = "whsec_" + base64.b64encode(b"a-key-the-engine-does-not-have").decode()


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("simulate_provisioning", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def answers(summary: str) -> dict[str, int]:
    return {
        f"{code} {outcome}": int(n) for code, outcome, n in re.findall(r"^\s+(\d{3}) (\S+)\s+(\d+)$", summary, re.M)
    }


def test_sends_signed_traffic_that_is_stored_once_per_webhook_id(engine_url):
    expected = simulate_traffic(workspaces=12, now=datetime.now(UTC), seed=5)
    unique = {m.msg_id: m for m in expected}

    out, err = run("--url", engine_url, "--workspaces", "12", "--rate", "0", "--seed", "5")

    assert answers(out) == {"202 accepted": len(unique), "200 duplicate": len(expected) - len(unique)}
    assert f"Sent {len(expected)} of {len(expected)} messages" in out
    assert "ETA" in err and "seed 5" in err
    stored = Event.objects.filter(source="provisioning")
    assert set(stored.values_list("external_id", flat=True)) == set(unique)
    assert Counter(stored.values_list("type", flat=True)) == Counter(m.type for m in unique.values())
    assert stored.filter(type="trial.started").count() == 12


def test_telemetry_goes_in_batches_and_is_stored_once_per_event_id(engine_url):
    expected = simulate_traffic(workspaces=12, now=datetime.now(UTC), seed=5)
    unique = {m.msg_id: m for m in expected}

    out, err = run("--url", engine_url, "--workspaces", "12", "--rate", "0", "--seed", "5", "--batch-size", "50")

    # a redelivery in a batch is a duplicate event inside a 202 batch answer, alone it is a 200
    counted = answers(out)
    assert counted.get("202 accepted", 0) == len(unique), counted
    assert counted.get("202 duplicate", 0) + counted.get("200 duplicate", 0) == len(expected) - len(unique)
    assert re.search(r"in (\d+) requests \((\d+) batches\)", err)
    requests, batches = map(int, re.search(r"in (\d+) requests \((\d+) batches\)", err).groups())
    telemetry = sum(m.type not in LIFECYCLE for m in expected)
    assert batches >= telemetry / 50 and requests < len(expected), (requests, batches)
    stored = Event.objects.filter(source="provisioning")
    assert set(stored.values_list("external_id", flat=True)) == set(unique)


def test_a_batch_size_outside_1_to_1000_is_refused_by_name():
    with pytest.raises(CommandError, match="--batch-size must be 0 \\(off\\) to 1000"):
        run("--batch-size", "1001")


def test_the_same_seed_again_is_all_duplicates(engine_url):
    run("--url", engine_url, "--workspaces", "3", "--rate", "0", "--seed", "9")
    before = Event.objects.count()

    out, _ = run("--url", engine_url, "--workspaces", "3", "--rate", "0", "--seed", "9")

    assert set(answers(out)) == {"200 duplicate"}
    assert Event.objects.count() == before


def test_events_and_rate_bound_the_run(engine_url):
    started = time.monotonic()
    out, _ = run("--url", f"{engine_url}/webhooks/provisioning/", "--events", "6", "--rate", "10", "--seed", "1")
    elapsed = time.monotonic() - started
    assert "Sent 6 of 6 messages" in out
    counted = answers(out)
    assert sum(counted.values()) == 6
    assert Event.objects.count() == counted["202 accepted"]
    assert elapsed >= 0.5, "six messages at 10/s take half a second"


def test_duration_stops_the_run(engine_url):
    out, _ = run("--url", engine_url, "--rate", "5", "--duration", "1")
    sent = int(re.search(r"Sent (\d+) of", out).group(1))
    assert 3 <= sent <= 6


def test_an_unreachable_engine_is_a_clear_error():
    with pytest.raises(CommandError, match=r"Could not reach http://127\.0\.0\.1:\d+/webhooks/provisioning/.*running"):
        run("--url", f"http://127.0.0.1:{free_port()}", "--workspaces", "1")


def test_a_missing_secret_is_a_clear_error(settings):
    settings.PROVISIONING_WEBHOOK_SECRET = ""
    with pytest.raises(CommandError, match="PROVISIONING_WEBHOOK_SECRET is not set"):
        run("--workspaces", "1")


def test_a_malformed_secret_is_a_clear_error(settings):
    settings.PROVISIONING_WEBHOOK_SECRET = "not-a-whsec-key"
    with pytest.raises(CommandError, match="PROVISIONING_WEBHOOK_SECRET must be whsec_"):
        run("--workspaces", "1")


def test_a_sender_with_another_key_is_told_so(engine_url):
    """A separate process, as an operator runs it, signing with a key the engine does not have."""
    env = {**os.environ, "ENV_FILE": "", "DEBUG": "on", "PROVISIONING_WEBHOOK_SECRET": OTHER_KEY}
    result = subprocess.run(
        [sys.executable, "manage.py", "simulate_provisioning", "--url", engine_url, "--events", "3", "--rate", "0"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert answers(result.stdout) == {"401 invalid_signature": 3}
    assert "another PROVISIONING_WEBHOOK_SECRET" in result.stderr
    assert Event.objects.count() == 0


def test_a_share_outside_0_to_1_is_refused_by_name():
    with pytest.raises(CommandError, match="--late-share: must be a number from 0 to 1"):
        run("--late-share", "1.5")


class ThrottlingEngine(BaseHTTPRequestHandler):
    """A stand-in that answers the first attempt of every message 429 with Retry-After: 0."""

    seen: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        msg_id = self.headers["webhook-id"]
        first = msg_id not in self.seen
        self.seen.append(msg_id)
        body = json.dumps({"error": "rate_limited"} if first else {"id": msg_id, "status": "accepted"}).encode()
        self.send_response(429 if first else 202)
        if first:
            self.send_header("Retry-After", "0")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_429_is_sent_again_after_retry_after():
    server = ThreadingHTTPServer(("127.0.0.1", 0), ThrottlingEngine)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        # No redeliveries: a redelivered id is not "first" to the stand-in, so it would not be refused.
        out, _ = run(
            "--url", f"http://127.0.0.1:{server.server_address[1]}", "--events", "3", "--rate", "0",
            "--duplicate-share", "0",
        )  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    assert answers(out) == {"202 accepted": 3}
    assert "3 attempt(s) were answered 429 rate_limited and sent again later." in out
    assert len(ThrottlingEngine.seen) == 6
