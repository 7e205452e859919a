"""A worker SIGKILLed mid-task loses nothing: real processes, a real database of their own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from django.db import connection

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("crash_worker.py")


@pytest.fixture
def scratch_database(tmp_path) -> Iterator[str]:
    """A database the child processes share: a new PostgreSQL database, or a SQLite file."""
    if connection.vendor != "postgresql":
        yield f"sqlite:///{tmp_path / 'crash.sqlite3'}"
        return
    params = connection.settings_dict
    name = f"lifecycle_crash_{uuid.uuid4().hex[:10]}"
    admin = dict(
        host=params["HOST"] or "127.0.0.1", port=params["PORT"] or 5432, user=params["USER"], dbname="postgres"
    )
    with psycopg.connect(**admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgres://{params['USER']}@{admin['host']}:{admin['port']}/{name}"
    finally:
        with psycopg.connect(**admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def child_env(database_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "ENV_FILE": "",
        "DEBUG": "on",
        "DATABASE_URL": database_url,
        "EVENT_LEASE_SECONDS": "2",
        "LOG_LEVEL": "WARNING",
    }


def run(mode: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, str(WORKER), mode], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.django_db
def test_worker_killed_mid_task_is_recovered_after_its_lease(scratch_database):
    # given two stored events and a worker that has claimed them
    env = child_env(scratch_database)
    migrate = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert migrate.returncode == 0, migrate.stderr
    run("store", env)
    worker = subprocess.Popen([sys.executable, str(WORKER), "hang"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout.readline().strip() == "claimed"
        # when it is killed without a chance to clean up
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == -signal.SIGKILL
    assert json.loads(run("status", env)) == {"k1": "processing", "k2": "processing"}
    # then once the lease has passed the sweeper hands the work on and it completes
    time.sleep(2.5)
    counts = json.loads(run("recover", env))
    assert counts["expired_leases"] == 2
    assert json.loads(run("status", env)) == {"k1": "completed", "k2": "completed"}
