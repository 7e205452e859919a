#!/usr/bin/env python3
"""Restart this machine's task cluster when the engine's /healthz says the queue heartbeat is stale.

Why: a django-q2 worker killed while idle (the OOM killer, a stray `kill -9`) can die holding the lock
of the cluster's internal multiprocessing queue; its siblings then wait on that lock for good and the
cluster runs nothing, although every process is alive (django-q2 issue #23). The engine notices: the
`failures.tasks.heartbeat` task stops stamping its row and /healthz reports the queue heartbeat `stale` (and
answers 503 naming `queue_heartbeat`, unless HEALTH_CHECK_HEARTBEATS is off there). This script, run
every minute by lifecycle-qcluster-health.timer, then restarts the cluster's systemd unit. Nothing is
lost by the restart: the event rows are the record and the sweeper re-enqueues.

It does nothing when the database is what failed (a restart cannot help), when the web tier cannot be
reached, or while the unit is younger than --grace seconds (a new cluster needs a minute to beat).
Standard library only; runs with the system's python3. Exit status 0 unless the answer made no sense.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request


def fetch(url: str, timeout: float) -> dict | None:
    """The /healthz JSON (503 answers carry JSON too); None when the web tier cannot be reached."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (an operator's URL)
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read())
    except (urllib.error.URLError, OSError) as exc:
        print(f"{url} unreachable ({exc}); nothing to judge the cluster by", file=sys.stderr)
        return None


def unit_age_seconds(unit: str) -> float | None:
    """Seconds since the unit became active (systemd's monotonic timestamp), None if unknown or inactive."""
    done = subprocess.run(
        ["systemctl", "show", "--property=ActiveEnterTimestampMonotonic", "--value", unit],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    value = done.stdout.strip()
    if done.returncode != 0 or not value.isdigit() or value == "0":
        return None
    return time.monotonic() - int(value) / 1e6


def decide(health: dict, *, age: float | None, grace: float) -> tuple[bool, str]:
    """(restart?, why) from a /healthz answer and the unit's age.

    Judged by the heartbeat itself, not by `failed`: a web tier run with HEALTH_CHECK_HEARTBEATS=off
    (so the load balancer keeps taking webhooks while the cluster is down) still reports it.
    """
    beat = health["heartbeats"].get("queue", {})
    status = beat.get("status", "?")
    if health.get("database") != "ok":
        return False, f"the database is failing ({health.get('database')}); restarting the cluster would not help"
    if status not in ("stale", "missing"):
        return False, f"queue heartbeat {status} (age {beat.get('age_seconds')} s)"
    if age is not None and age < grace:
        return False, f"queue heartbeat {status}, but the cluster started only {age:.0f} s ago"
    return True, f"queue heartbeat {status} (age {beat.get('age_seconds')} s, limit {beat.get('max_age_seconds')} s)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1])
    default_url = os.environ.get("HEALTH_URL", "http://127.0.0.1:8000/healthz")
    parser.add_argument("--url", default=default_url,
                        help="/healthz (env HEALTH_URL); on a worker-only machine, the balancer's")  # fmt: skip
    parser.add_argument("--restart", metavar="UNIT", default="lifecycle-qcluster.service",
                        help="the systemd unit of this machine's task cluster")  # fmt: skip
    parser.add_argument("--grace", type=float, default=300.0,
                        help="seconds after the unit started during which it is left alone")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=10.0, help="HTTP timeout in seconds")
    parser.add_argument("--dry-run", action="store_true", help="say what would be done, do nothing")
    args = parser.parse_args(argv)
    health = fetch(args.url, args.timeout)
    if health is None:
        return 0
    if not isinstance(health, dict) or not isinstance(health.get("heartbeats"), dict):
        print(f"unexpected answer from {args.url}: {str(health)[:200]}", file=sys.stderr)
        return 2
    restart, why = decide(health, age=None if args.dry_run else unit_age_seconds(args.restart), grace=args.grace)
    if not restart:
        print(f"ok: {why}")
        return 0
    print(f"restarting {args.restart}: {why}", file=sys.stderr)
    if not args.dry_run:
        subprocess.run(["systemctl", "restart", args.restart], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
