#!/usr/bin/env python
"""Processing cost with the trigger engine on ÷ off (issue 23: at least 0.7), and where its statements go.

In one child process on a throw-away PostgreSQL database: rounds of --workspaces fresh workspaces, each with
a trial.started, processed by processing.tasks.process_workspaces in chunks of --chunk (as the cluster's
tasks take them), in three modes that take turns round after round (so drift in the machine's load falls
on all three alike):

- off  — no trigger enabled (the engine's cost is one cache read a run);
- none — five triggers enabled, none matching a new trial but a date timer set for each (the common case:
         most runs are about events no trigger waits for);
- all  — every workspace fires twice (an event trigger and a stage trigger), each firing with an email
         rendered and its dispatch planned, and a date timer set: the worst case.

The figure is CPU seconds of the child plus its PostgreSQL backend per event (/proc); the ratios are CPU
per event off ÷ none and off ÷ all. After the timed rounds one more round per mode counts every statement
by verb and table (not timed: counting costs), which says where the engine's work goes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import scaffold
from common import (
    background_busy_pct,
    django_env,
    django_setup,
    drop_database,
    emit,
    migrate,
    recreate_database,
    run_child,
    start_conditions,
)
from scaffold import Progress, machine_info, say

SCRIPT = Path(__file__).resolve()
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/lifecycle_bench_triggers"
MODES = ("off", "none", "all")
TARGET_RATIO = 0.7  # CPU per event with triggers off ÷ on (issue 23)
TABLE = re.compile(r'(?:FROM|INTO|UPDATE)\s+"([^"]+)"')
ENGINE_TABLES = (
    "triggers_trigger",
    "triggers_firing",
    "triggers_timer",
    "triggers_caplock",
    "triggers_experiment",
    "messaging_dispatch",
)
#: The triggers of each mode (every one with an email action, `welcome`'s templates).
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
    "off": [],
}


# --- the child process (Django) --------------------------------------------------------------------------


def backend_cpu(cursor: Any) -> float:
    """CPU seconds of this connection's backend so far (/proc of its pid)."""
    cursor.execute("SELECT pg_backend_pid()")
    pid = cursor.fetchone()[0]
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def store_round(round_no: int, workspaces: int, now: datetime) -> list[str]:
    """A trial.started for each of `workspaces` new workspaces, stored as the webhook would (not processed)."""
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


def mode_set(mode: str) -> None:
    """Enable exactly the triggers of `mode` (the cached list and cache entries forgotten)."""
    from django.core.cache import cache

    from triggers.models import Trigger
    from triggers.services import triggers_enabled_forget

    Trigger.objects.update(enabled=False)
    Trigger.objects.filter(key__in=[key for key, _ in TRIGGERS[mode]]).update(enabled=True)
    triggers_enabled_forget()
    cache.clear()


def process_round(keys: list[str], chunk: int) -> None:
    from processing.tasks import process_workspaces

    for index in range(0, len(keys), chunk):
        process_workspaces(keys[index : index + chunk], True)


def child_main(args: argparse.Namespace) -> int:
    django_setup()
    from django.db import connection

    from triggers.models import Firing, Trigger
    from triggers.services import trigger_save
    from usage.definitions import definitions_load, shipped_document

    definitions_load(shipped_document())
    defined = {key: when for mode in MODES for key, when in TRIGGERS[mode]}
    for key, when in defined.items():
        trigger_save(trigger=Trigger(key=key, name=key, when=when, enabled=False,
                                     actions=[{"channel": "email", "template": "welcome"}]))  # fmt: skip
    now = datetime.now(UTC)
    cpu = {mode: 0.0 for mode in MODES}
    events = {mode: 0 for mode in MODES}
    firings = {mode: 0 for mode in MODES}
    round_no = 0
    for r in range(args.rounds):
        for mode in MODES if r % 2 == 0 else tuple(reversed(MODES)):
            mode_set(mode)
            keys = store_round(round_no := round_no + 1, args.workspaces, now)
            before = Firing.objects.count()
            with connection.cursor() as cursor:
                backend = backend_cpu(cursor)
            started = time.process_time()
            process_round(keys, args.chunk)
            spent = time.process_time() - started
            with connection.cursor() as cursor:
                spent += backend_cpu(cursor) - backend
            cpu[mode] += spent
            events[mode] += len(keys)
            firings[mode] += Firing.objects.count() - before
            emit({"progress": {"round": r + 1, "mode": mode, "cpu_seconds": round(spent, 3)}})
    statements = {mode: count_statements(mode, round_no := round_no + 1, args, now) for mode in MODES}
    emit({"result": {"cpu_seconds": cpu, "events": events, "firings": firings, "statements": statements}})
    return 0


def count_statements(mode: str, round_no: int, args: argparse.Namespace, now: datetime) -> dict[str, float]:
    """Statements per event by verb and table, in one more (untimed) round of `mode`."""
    from django.db import connection

    mode_set(mode)
    keys = store_round(round_no, args.workspaces, now)
    counted: Counter[str] = Counter()

    def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        table = TABLE.search(sql)
        counted[f"{sql.split(None, 1)[0].upper()} {table.group(1) if table else ''}".strip()] += 1
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        process_round(keys, args.chunk)
    return {name: round(n / len(keys), 3) for name, n in counted.most_common()}


# --- the benchmark ------------------------------------------------------------------------------------------


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.databases: list[str] = []

    def cleanup(self) -> None:
        if not self.args.keep_database:
            for url in self.databases:
                with contextlib.suppress(Exception):
                    drop_database(url)


def benchmark(run: Run) -> dict[str, Any]:
    args = run.args
    report: dict[str, Any] = start_conditions(args.wait_others)
    run.databases.append(args.database_url)
    say(f"creating and migrating {scaffold.db_name(args.database_url)}")
    recreate_database(args.database_url)
    migrate(django_env(args.database_url))
    progress = Progress("rounds", args.rounds * len(MODES), quiet=args.no_progress, unit=" runs")
    done = [0]

    def on_line(message: dict[str, Any]) -> None:
        done[0] += 1
        progress.show(done[0], extra=f"  {message['progress']}")

    child = ["--child", "measure", "--database-url", args.database_url, "--rounds", str(args.rounds),
             "--workspaces", str(args.workspaces), "--chunk", str(args.chunk)]  # fmt: skip
    busy_before = background_busy_pct(1.0)
    load_before = os.getloadavg()
    result = run_child(SCRIPT, child, django_env(args.database_url), on_line=on_line)
    progress.show(done[0], final=True)
    per_event = {mode: result["cpu_seconds"][mode] / result["events"][mode] for mode in MODES}
    report.update(
        background_busy_pct_just_before=busy_before,
        load_average_during=[round(x, 2) for x in load_before] + [round(x, 2) for x in os.getloadavg()],
        events=result["events"],
        firings=result["firings"],
        cpu_ms_per_event={mode: round(1000 * value, 3) for mode, value in per_event.items()},
        ratio_off_to_none=round(per_event["off"] / per_event["none"], 3),
        ratio_off_to_all=round(per_event["off"] / per_event["all"], 3),
        statements_per_event=result["statements"],
        engine_statements_per_event={
            mode: {name: n for name, n in counted.items() if any(t in name for t in ENGINE_TABLES)}
            for mode, counted in result["statements"].items()
        },
        machine_after=machine_info(),
    )
    return report


def judge(report: dict[str, Any]) -> dict[str, Any]:
    targets = {}
    for mode in ("none", "all"):
        ratio = report[f"ratio_off_to_{mode}"]
        targets[f"triggers_{mode}_cost_ratio"] = {
            "target": f">= {TARGET_RATIO} (CPU per event off ÷ {mode})",
            "value": ratio,
            "pass": ratio >= TARGET_RATIO,
        }
    fired = report["firings"]
    targets["triggers_fire_as_designed"] = {
        "target": "off: no firing; none: no firing; all: two per workspace",
        "value": fired,
        "pass": fired["off"] == 0 and fired["none"] == 0 and fired["all"] == 2 * report["events"]["all"],
    }
    return targets


def print_summary(report: dict[str, Any], targets: dict[str, Any]) -> None:
    print(f"\nCPU ms per event (process + its PostgreSQL backend): {report['cpu_ms_per_event']}")
    print(f"off ÷ none {report['ratio_off_to_none']}, off ÷ all {report['ratio_off_to_all']}")
    for mode, counted in report["engine_statements_per_event"].items():
        total = sum(report["statements_per_event"][mode].values())
        print(f"  {mode}: {total:.1f} statements per event, of which the engine's: {counted}")
    scaffold.print_targets(targets)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = scaffold.parser(
        "triggers_processing", __doc__, "Same process, same database, modes interleaved round by round."
    )
    parser.add_argument("--rounds", type=int, default=6, help="rounds of one run per mode (order alternates)")
    parser.add_argument("--workspaces", type=int, default=300, help="new workspaces (one trial each) per run")
    parser.add_argument("--chunk", type=int, default=25, help="workspaces per process_workspaces call")
    scaffold.common_arguments(
        parser,
        "triggers_processing",
        database_url=DEFAULT_DATABASE_URL,
        children=("measure",),
        quick="2 rounds of 100 workspaces",
    )
    args = scaffold.parse(parser, argv, quick={"rounds": 2, "workspaces": 100})
    if args.rounds < 1 or args.chunk < 1 or args.workspaces < 1:
        parser.error("--rounds, --workspaces and --chunk must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return scaffold.run_benchmark("triggers_processing", args, argv, Run, benchmark, judge, print_summary,
                                  child_main)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
