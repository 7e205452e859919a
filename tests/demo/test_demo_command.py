"""Smoke test of `make demo`'s orchestration: it starts its services, sends traffic, and stops them all."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from tests.demo.conftest import REPO, free_port

DEMO_PASSWORD = "demo-smoke-Pa55"


def read_lines(stream, into: queue.Queue) -> None:
    for line in stream:
        into.put(line)
    into.put(None)


def wait_for_line(lines: queue.Queue, seen: list[str], pattern: str, deadline: float) -> re.Match:
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        if line is None:
            raise AssertionError("the demo exited early:\n" + "".join(seen))
        seen.append(line)
        if match := re.search(pattern, line):
            return match
    raise AssertionError(f"no line matching {pattern!r} in time:\n" + "".join(seen))


def seen_or_wait(lines: queue.Queue, seen: list[str], pattern: str, deadline: float) -> str:
    """The line matching `pattern` among those read so far, else the next one to come (the narration and
    the traffic's output interleave)."""
    found = next((line for line in seen if re.search(pattern, line)), None)
    return found if found is not None else wait_for_line(lines, seen, pattern, deadline).string


def health(url: str) -> dict:
    """The engine's health answer; 503 is fine here (its heartbeats are younger than their first beat)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read())


def group_exists(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


PRINT_DATABASE = "from django.conf import settings; print(settings.DATABASES['default']['NAME'])"


def test_demo_starts_everything_sends_traffic_and_stops_all_children_on_ctrl_c(tmp_path: Path):
    web, smtp, mail, salesforce, product, desk = (free_port() for _ in range(6))
    env = {**os.environ, "ENV_FILE": "", "DEBUG": "on", "DEMO_PASSWORD": DEMO_PASSWORD}
    env.pop("DATABASE_URL", None)
    ports = ["--addr", f"127.0.0.1:{web}", "--smtp-port", str(smtp), "--mail-port", str(mail)]
    ports += ["--salesforce-port", str(salesforce), "--product-port", str(product), "--zendesk-port", str(desk)]
    demo = subprocess.Popen(
        [sys.executable, "manage.py", "demo", *ports, "--data-dir", str(tmp_path), "--workspaces", "4", "--rate", "50"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=read_lines, args=(demo.stdout, lines), daemon=True).start()
    seen: list[str] = []
    children: dict[str, int] = {}
    try:
        deadline = time.monotonic() + 240
        for name in ("mail_sink", "web", "qcluster", "fire_timers"):
            children[name] = int(wait_for_line(lines, seen, rf"started {name} \(pid (\d+)\)", deadline).group(1))
        wait_for_line(lines, seen, rf"Logins\s+admin / {DEMO_PASSWORD}", deadline)
        children["scenario"] = int(wait_for_line(lines, seen, r"started scenario \(pid (\d+)\)", deadline).group(1))
        children["traffic"] = int(wait_for_line(lines, seen, r"started traffic \(pid (\d+)\)", deadline).group(1))
        sent = wait_for_line(lines, seen, r"Sent (\d+) of (\d+) messages", deadline)
        assert sent.group(1) == sent.group(2)
        wait_for_line(lines, seen, r"Traffic sent\.", deadline)
        # the scenario's threshold is told as it happens, with its why, and its ticket goes out
        told = seen_or_wait(lines, seen, r"THRESHOLD: export_failures_triage fired for demo-exports-", deadline)
        after = seen.index(told) + 1
        why = seen[after] if after < len(seen) else wait_for_line(lines, seen, r".", deadline).string
        assert re.match(r"\s+why: 3 matching events within 3600 s \(threshold 3", why)
        seen_or_wait(lines, seen, r"threshold firing \d+: ticket sent", deadline)

        assert health(f"http://127.0.0.1:{web}/healthz")["database"] == "ok"
        with urllib.request.urlopen(f"http://127.0.0.1:{mail}/api/messages", timeout=10) as response:
            assert isinstance(json.load(response), list)
        with sqlite3.connect(tmp_path / "demo.sqlite3", timeout=20) as db:
            stored = db.execute("SELECT count(*) FROM events_event WHERE type = 'trial.started'").fetchone()[0]
            owners = db.execute("SELECT count(*) FROM workspaces_account WHERE owner_id IS NOT NULL").fetchone()[0]
        assert stored == 4 + 3, "the traffic's trials and the scenario's"
        assert owners > 0, "demo_seed gave the pre-existing accounts their reps"
        # a command in another terminal, with nothing exported, acts on the demo's database
        beside = subprocess.run(
            [sys.executable, "manage.py", "shell", "--no-imports", "-c", PRINT_DATABASE],
            cwd=REPO,
            env={**env, "DEMO_DATA_DIR": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert beside.stdout.strip() == str(tmp_path / "demo.sqlite3"), beside.stdout + beside.stderr
        assert "Using the running demo's database" in beside.stderr

        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=60) == 0
        wait_for_line(lines, seen, r"Demo stopped\.", time.monotonic() + 10)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
        for pid in children.values():
            if group_exists(pid):
                os.killpg(pid, signal.SIGKILL)
    leftovers = [name for name, pid in children.items() if group_exists(pid)]
    assert not leftovers, f"{leftovers} outlived the demo"
    assert (tmp_path / "logs" / "web.log").exists()
    assert not (tmp_path / "running.env").exists(), "a stopped demo leaves no settings for commands to pick up"


def test_a_busy_port_is_named_before_anything_starts(tmp_path: Path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CommandError, match=rf"Port {port} on 127\.0\.0\.1 is busy.*--mail-port"):
            call_command("demo", "--mail-port", str(port), "--addr", f"127.0.0.1:{free_port()}",
                         "--smtp-port", str(free_port()), "--salesforce-port", str(free_port()),
                         "--data-dir", str(tmp_path))  # fmt: skip
    assert not (tmp_path / "demo.sqlite3").exists()


def test_the_demo_only_listens_on_loopback(tmp_path: Path):
    with pytest.raises(CommandError, match="loopback-only"):
        call_command("demo", "--addr", "0.0.0.0:8000", "--data-dir", str(tmp_path))
