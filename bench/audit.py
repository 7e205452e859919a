#!/usr/bin/env python
"""Audit tax benchmark: processing throughput with django-auditlog on ÷ off.

One backlog of lifecycle events (the generator of process.py, loaded with COPY as `new`) is put into a
migrated template database once. Every run clones it into a fresh database and drains it in one process
with processing.tasks.process_workspaces (the same chunks as process.py's in-process baseline):

- on   — the engine as shipped: every business model registered with auditlog, changes attributed to
         the system actor;
- off  — the same code with auditlog switched off for that process only: every model unregistered
         (auditlog.registry.auditlog.unregister: its signal receivers disconnected, no LogEntry written)
         and the system-actor context made a no-op (it exists only for the audit trail).

Runs alternate (on, off, then off, on, …) for --rounds rounds so drift on a shared machine hits both
sides alike; the ratio is the median events/s on ÷ the median off. Target ≥ 0.8. Figures, checks
(identical folds, audit rows only when on) go to bench/results/audit.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import resource
import statistics
import sys
import time
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
import scaffold
from common import (
    background_busy_pct,
    clone_database,
    cpu_delta,
    cpu_snapshot,
    db_name,
    django_env,
    django_setup,
    drop_database,
    emit,
    find_cpu_roots,
    libpq_dsn,
    migrate,
    proc_status,
    recreate_database,
    run_child,
    server_info,
    start_conditions,
    template_url,
)
from process import FOLD_CHECKSUM, LINKS_CHECKSUM, load_backlog
from scaffold import Progress, machine_info, say

SCRIPT = Path(__file__).resolve()
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/lifecycle_bench_audit"
MODES = ("on", "off")
TABLE = re.compile(r'(?:FROM|INTO|UPDATE)\s+"([^"]+)"')
TARGET_RATIO = 0.8  # events/s with auditlog ÷ without, at least (issue 8)


# --- the child process (Django) --------------------------------------------------------------------------


def audit_off() -> list[str]:
    """Switch the audit trail off in this process only; return the models that were audited."""
    from auditlog.registry import auditlog

    import workspaces.actors

    models = auditlog.get_models()
    for model in models:
        auditlog.unregister(model)  # disconnects its pre/post_save, post_delete and m2m receivers
    # acting_as_system() looks both up at call time: no actor lookup, no per-transaction signal hook.
    workspaces.actors.set_actor = lambda *args, **kwargs: contextlib.nullcontext()
    workspaces.actors.system_actor = lambda: None
    return sorted(model._meta.label for model in models)


def child_main(args: argparse.Namespace) -> int:
    django_setup()
    from auditlog.registry import auditlog
    from django.db import connection

    from processing.tasks import process_workspaces

    audited = audit_off() if args.child == "off" else sorted(m._meta.label for m in auditlog.get_models())
    keys = [f"ws_{i:07d}" for i in range(args.workspaces)]
    chunks = [keys[i : i + args.chunk] for i in range(0, len(keys), args.chunk)]
    claimed = failed = 0
    queries = Counter()

    def count(execute, sql, params, many, context):  # where the extra work goes: statements by verb and table
        table = TABLE.search(sql)
        queries[f"{sql.split(None, 1)[0].upper()} {table.group(1) if table else ''}".strip()] += 1
        return execute(sql, params, many, context)

    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    with connection.execute_wrapper(count):
        for n, chunk in enumerate(chunks, 1):
            outcome = process_workspaces(chunk)
            claimed += outcome["claimed"]
            failed += outcome["failed"]
            emit({"progress": claimed, "chunks": n})
    seconds = time.monotonic() - t0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime - usage0.ru_utime - usage0.ru_stime
    emit({"result": {"seconds": seconds, "claimed": claimed, "failed": failed, "audited_models": audited,
                     "queries": dict(queries.most_common()),
                     "still_audited": len(auditlog.get_models()), "cpu_seconds": cpu,
                     "peak_rss_mb": round(proc_status().get("VmHWM", 0) / 1024, 1)}})  # fmt: skip
    return 0


# --- checks ---------------------------------------------------------------------------------------------------


def verify(dsn: str, args: argparse.Namespace) -> dict[str, Any]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        q = conn.execute
        by_status = dict(q("SELECT status, count(*) FROM events_event GROUP BY 1").fetchall())
        entries = dict(q("SELECT ct.model, count(*) FROM auditlog_logentry e JOIN django_content_type ct"
                         " ON ct.id = e.content_type_id GROUP BY 1").fetchall())  # fmt: skip
        actors = q("SELECT count(DISTINCT actor_id), count(*) FILTER (WHERE actor_id IS NULL)"
                   " FROM auditlog_logentry").fetchone()  # fmt: skip
        out = {
            "events_by_status": by_status,
            "workspaces": q("SELECT count(*) FROM workspaces_workspace").fetchone()[0],
            "audit_entries": sum(entries.values()),
            "audit_entries_by_model": entries,
            "audit_actors": actors[0],
            "audit_entries_without_actor": actors[1],
            "fold_checksum": q(FOLD_CHECKSUM).fetchone()[0],
            "links_checksum": q(LINKS_CHECKSUM).fetchone()[0],
        }
    out["all_completed"] = set(by_status) == {"completed"} and by_status["completed"] == args.events
    return out


# --- the benchmark ------------------------------------------------------------------------------------------


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.databases: list[str] = []
        self.others: dict[str, str] = {}

    def cleanup(self) -> None:
        if not self.args.keep_database:
            for url in self.databases:
                with contextlib.suppress(Exception):
                    drop_database(url)


def run_once(run: Run, mode: str, label: str) -> dict[str, Any]:
    args = run.args
    clone_database(template_url(args.database_url), args.database_url)
    busy_before = background_busy_pct(1.0)
    for line in scaffold.other_benchmarks("bench/ingest.py|bench/salesforce_sync.py|bench/process.py|bench/replay.py"):
        run.others.setdefault(line.split()[0], line[:160])
    roots = find_cpu_roots()
    cpu_before = cpu_snapshot(roots)
    progress = Progress(label, args.events, quiet=args.no_progress, unit=" ev")
    child_args = ["--child", mode, "--workspaces", str(args.workspaces), "--chunk", str(args.chunk),
                  "--database-url", args.database_url]  # fmt: skip
    result = run_child(
        SCRIPT, child_args, django_env(args.database_url), on_line=lambda m: progress.show(m["progress"])
    )
    cpu = cpu_delta(cpu_before, cpu_snapshot(roots))
    progress.show(args.events, final=True)
    out = {
        "mode": mode,
        "seconds": round(result["seconds"], 3),
        "events_per_second": round(args.events / result["seconds"], 1),
        "claimed": result["claimed"],
        "queries": result["queries"],
        "queries_per_event": round(sum(result["queries"].values()) / args.events, 2),
        "failed_workspaces": result["failed"],
        "audited_models": result["audited_models"],
        "still_audited": result["still_audited"],
        "cpu_seconds": {
            "process": round(result["cpu_seconds"], 2),
            "postgres": round(cpu.get("postgres", 0.0), 2),
            "machine": round(cpu["machine"], 1),
        },
        "machine_busy_pct": round(cpu["machine_busy_pct"], 1),
        "background_busy_pct_before": busy_before,
        "peak_rss_mb": result["peak_rss_mb"],
        "verification": verify(libpq_dsn(args.database_url), args),
    }
    drop_database(args.database_url)
    return out


def benchmark(run: Run) -> dict[str, Any]:
    args = run.args
    report: dict[str, Any] = start_conditions(args.wait_others)
    template = template_url(args.database_url)
    run.databases += [args.database_url, template]
    say(f"creating {db_name(template)}, migrating it and loading the backlog (each run clones it)")
    recreate_database(template)
    migrate(django_env(template))
    report["postgres"] = server_info(template)
    report["backlog"] = load_backlog(args, libpq_dsn(template))
    report["runs"] = []
    for r in range(1, args.rounds + 1):
        for mode in MODES if r % 2 else reversed(MODES):
            label = f"round {r}/{args.rounds} audit {mode}"
            say(f"{label}: cloning the template, draining {args.events:,} events in one process")
            outcome = run_once(run, mode, label)
            outcome["round"] = r
            report["runs"].append(outcome)
            say(f"{label}: {outcome['events_per_second']:,.1f} events/s, "
                f"{outcome['verification']['audit_entries']:,} audit entries")  # fmt: skip
    report["other_benchmarks_seen"] = sorted(run.others.values())
    report["machine_after"] = machine_info()
    return report


def judge(report: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    runs = report["runs"]
    rate = {mode: [r["events_per_second"] for r in runs if r["mode"] == mode] for mode in MODES}
    median = {mode: statistics.median(values) for mode, values in rate.items()}
    ratio = round(median["on"] / median["off"], 3)
    per_round = {}
    for r in sorted({run["round"] for run in runs}):
        pair = {run["mode"]: run["events_per_second"] for run in runs if run["round"] == r}
        per_round[r] = round(pair["on"] / pair["off"], 3)
    report["events_per_second"] = {mode: {"runs": rate[mode], "median": median[mode]} for mode in MODES}
    report["ratio_on_to_off"] = ratio
    report["ratio_per_round"] = per_round
    on = [r["verification"] for r in runs if r["mode"] == "on"]
    off = [r["verification"] for r in runs if r["mode"] == "off"]
    folds = sorted({r["verification"]["fold_checksum"] for r in runs})
    return {
        "ratio_on_to_off": {"target": f">= {TARGET_RATIO}", "value": ratio, "pass": ratio >= TARGET_RATIO},
        "audit_rows_only_when_on": {
            "target": "audit entries (with the system actor) when on, none when off",
            "value": {"on": [v["audit_entries"] for v in on], "off": [v["audit_entries"] for v in off]},
            "pass": all(v["audit_entries"] > 0 and v["audit_entries_without_actor"] == 0 for v in on)
            and all(v["audit_entries"] == 0 for v in off),
        },
        "same_result_on_and_off": {
            "target": f"every run: all {args.events} events completed, identical folded workspaces",
            "value": folds,
            "pass": len(folds) == 1 and all(r["verification"]["all_completed"] for r in runs),
        },
    }


def print_summary(report: dict[str, Any], targets: dict[str, Any]) -> None:
    print()
    for r in report["runs"]:
        v = r["verification"]
        print(f"round {r['round']} audit {r['mode']:<3}  {r['events_per_second']:8,.1f} events/s  "
              f"{r['seconds']:8.1f} s  CPU {r['cpu_seconds']['process']:7.1f} s (+ postgres "
              f"{r['cpu_seconds']['postgres']:.1f} s)  {r['queries_per_event']:5.1f} queries/event  "
              f"{v['audit_entries']:7,} audit entries  "
              f"machine busy {r['machine_busy_pct']:.0f} %")  # fmt: skip
    medians = report["events_per_second"]
    print(f"\nmedian events/s: on {medians['on']['median']:,.1f}, off {medians['off']['median']:,.1f}; "
          f"ratio on ÷ off {report['ratio_on_to_off']} (per round {report['ratio_per_round']})\n")  # fmt: skip
    scaffold.print_targets(targets)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = scaffold.parser(
        "audit",
        __doc__,
        "Same backlog, same process, fresh database per run.",
        template=True,
        note="Nothing is switched off anywhere but in the benchmark's own child process.",
    )
    parser.add_argument("--events", type=int, default=10_000, help="lifecycle events in the backlog")
    parser.add_argument("--workspaces", type=int, default=2_000, help="workspaces the events are about")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of one run on and one off (order alternates)")
    parser.add_argument("--chunk", type=int, default=100, help="workspaces per process_workspaces call")
    scaffold.common_arguments(
        parser,
        "audit",
        database_url=DEFAULT_DATABASE_URL,
        children=MODES,
        database_help="PostgreSQL database to clone into",
        quick="2,000 events over 400 workspaces, one round",
    )
    args = scaffold.parse(parser, argv, quick={"events": 2_000, "workspaces": 400, "rounds": 1}, backlog=True)
    if args.rounds < 1 or args.chunk < 1:
        parser.error("--rounds and --chunk must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return scaffold.run_benchmark(
        "audit", args, argv, Run, benchmark, partial(judge, args=args), print_summary, child_main
    )


if __name__ == "__main__":
    sys.exit(main())
