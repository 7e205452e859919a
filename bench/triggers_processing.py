#!/usr/bin/env python
"""Processing cost with the trigger engine on ÷ off (issue 23: at least 0.7).

In one process on a throw-away PostgreSQL database: rounds of R fresh workspaces, each with a
trial.started, processed by
processing.tasks.process_workspaces in chunks of C, alternately with no trigger enabled ("off") and with
a realistic set enabled ("on": two event triggers, a stage trigger, a cohort trigger and a date trigger,
each with an email action, so firings and their dispatches are written). Rounds interleave (off, on,
off, on, …) so machine load falls on both alike; the figure is CPU seconds of this process plus the
database backend per event, and the ratio is events per CPU second on ÷ off.

    .venv/bin/python bench/triggers_processing.py [--rounds 6] [--workspaces 300] [--chunk 25]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import django_env, drop_database, migrate, recreate_database
from scaffold import REPO

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/lifecycle_bench_triggers"
#: --fires all: every workspace fires two (welcome, onboarding) and sets a date timer: the worst case.
#: --fires none: the same kinds enabled, none matching a new trial but the date timer (the common case:
#: most runs are about events no trigger is waiting for).
TRIGGERS = {
    "all": [
        ("welcome", {"kind": "event", "event": {"type": "trial.started"}}),
        ("thanks", {"kind": "event", "event": {"type": "subscription.converted"}}),
        ("onboarding", {"kind": "stage", "from": None, "to": "onboarding"}),
        ("shallow", {"kind": "cohort", "cohort": "feature_shallow_frequent", "change": "entered"}),
        ("trial_ending", {"kind": "date", "field": "trial_expires_at", "days_before": 3}),
    ],
    "none": [
        ("churned", {"kind": "event", "event": {"type": "workspace.churned"}}),
        ("thanks", {"kind": "event", "event": {"type": "subscription.converted"}}),
        ("expanding", {"kind": "stage", "from": None, "to": "expanding"}),
        ("shallow", {"kind": "cohort", "cohort": "feature_shallow_frequent", "change": "entered"}),
        ("trial_ending", {"kind": "date", "field": "trial_expires_at", "days_before": 3}),
    ],
}


def backend_cpu(cursor) -> float:
    """CPU seconds of this connection's backend so far (/proc of its pid)."""
    cursor.execute("SELECT pg_backend_pid()")
    pid = cursor.fetchone()[0]
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def store_round(round_no: int, workspaces: int, now: datetime) -> list[str]:
    from events.services import events_store
    from events.store import NewEvent

    keys, events = [], []
    for i in range(workspaces):
        key = f"ws_r{round_no}_{i}"
        keys.append(key)
        started = now - timedelta(days=2, minutes=i % 60)
        data = {"workspace_id": key, "email": f"owner{i}@r{round_no}.example", "first_name": "Dana",
                "company": f"Co {i}"}  # fmt: skip
        events.append(NewEvent(source="provisioning", external_id=f"b{round_no}_{i}_s", type="trial.started",
                               occurred_at=started, workspace_key=key, payload={"type": "trial.started",
                               "timestamp": started.isoformat().replace("+00:00", "Z"), "data": data}))  # fmt: skip
    events_store(events, ring=lambda items: None)  # processed below, not by a cluster
    return keys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--workspaces", type=int, default=300)
    parser.add_argument("--chunk", type=int, default=25)
    parser.add_argument("--fires", choices=sorted(TRIGGERS), default="all", help="see TRIGGERS")
    parser.add_argument("--output", default="")
    args = parser.parse_args()
    env = django_env(args.database_url)
    recreate_database(args.database_url)
    try:
        migrate(env)
        os.environ.update(env)
        os.chdir(REPO)
        sys.path.insert(0, str(REPO))
        import django

        django.setup()
        return run(args)
    finally:
        from django.db import connections

        connections.close_all()
        drop_database(args.database_url)


def run(args: argparse.Namespace) -> int:
    from django.db import connection

    from processing.tasks import process_workspaces
    from triggers.models import Firing, Trigger
    from triggers.services import trigger_save, triggers_enabled_forget
    from usage.definitions import definitions_load, shipped_document
    from usage.models import Cohort

    if not Cohort.objects.exists():
        definitions_load(shipped_document())
    for key, when in TRIGGERS[args.fires]:
        trigger_save(trigger=Trigger(key=key, name=key, when=when, enabled=False,
                                     actions=[{"channel": "email", "template": "welcome"}]))  # fmt: skip
    from django.core.cache import cache

    load_start = os.getloadavg()
    now = datetime.now(UTC)
    totals = {"off": [0.0, 0], "on": [0.0, 0]}
    for round_no in range(args.rounds * 2):
        mode = "on" if round_no % 2 else "off"
        Trigger.objects.update(enabled=mode == "on")
        triggers_enabled_forget()
        cache.clear()
        keys = store_round(round_no, args.workspaces, now)
        with connection.cursor() as cursor:
            backend = backend_cpu(cursor)
        started = time.process_time()
        for index in range(0, len(keys), args.chunk):
            process_workspaces(keys[index : index + args.chunk], True)
        cpu = time.process_time() - started
        with connection.cursor() as cursor:
            cpu += backend_cpu(cursor) - backend
        totals[mode][0] += cpu
        totals[mode][1] += len(keys)
        print(f"round {round_no} {mode}: {cpu:.2f} s CPU for {len(keys)} workspaces", flush=True)
    per_event = {mode: cpu / n for mode, (cpu, n) in totals.items()}
    ratio = per_event["off"] / per_event["on"]
    report = {
        "benchmark": "triggers_processing",
        "git": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False
        ).stdout.strip(),
        "timestamp": now.isoformat(),
        "parameters": vars(args) | {"triggers_on": [key for key, _ in TRIGGERS[args.fires]]},
        "cpu_ms_per_event": {mode: round(value * 1000, 3) for mode, value in per_event.items()},
        "firings": Firing.objects.count(),
        "load_before": load_start,
        "load_after": os.getloadavg(),
        "targets": {"on_to_off": {"target": ">= 0.7", "value": round(ratio, 3), "pass": ratio >= 0.7}},
    }
    output = args.output or str(REPO / f"bench/results/triggers_processing-{args.fires}.json")
    Path(output).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0 if ratio >= 0.7 else 1


if __name__ == "__main__":
    sys.exit(main())
