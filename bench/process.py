#!/usr/bin/env python
"""Processing benchmark: drain a backlog of lifecycle events with a real django-q2 cluster.

A backlog of N lifecycle events over W workspaces is loaded with COPY as `new` into a throw-away
PostgreSQL database, then drained three ways, each from the same starting state:

1. orm        — `manage.py qcluster` (Q_BROKER=orm), the backlog enqueued as coarse tasks with
                events.services.enqueue_workspaces(chunk=C); timed until every event is `completed`.
2. redis      — the same with Q_BROKER=redis://127.0.0.1:6379/14 (that Redis database is flushed).
3. inprocess  — the baseline: processing.tasks.process_workspaces(keys) called in one process, over the
                same workspaces in the same chunks.

Figures, ratios cluster ÷ in-process, peak memory of the cluster's process tree and the checks go to
bench/results/process.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
import scaffold
from common import (
    LIFECYCLE_TYPES,
    TreeMemory,
    background_busy_pct,
    copy_events,
    cpu_delta,
    cpu_snapshot,
    db_name,
    django_env,
    django_setup,
    domains_of,
    drop_database,
    emit,
    event_counts,
    find_cpu_roots,
    flush_broker,
    insert_accounts,
    libpq_dsn,
    lifecycle_rows,
    log_level,
    migrate,
    proc_status,
    recreate_database,
    server_info,
    start_conditions,
    start_qcluster,
    stop_process,
    type_mix,
    vacuum_analyze,
)
from scaffold import REPO, Progress, machine_info, say, tail

SCRIPT = Path(__file__).resolve()
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/lifecycle_bench_process"
DEFAULT_REDIS = "redis://127.0.0.1:6379/14"
PHASES = ("orm", "redis", "inprocess")
TARGETS = {"orm": 0.5, "redis": 0.7}  # cluster events/s ÷ in-process events/s, at least
TYPES_SQL = "(" + ", ".join(f"'{t}'" for t in LIFECYCLE_TYPES) + ")"
OPEN_SQL = f"SELECT count(*) FROM events_event WHERE status IN ('new', 'processing', 'error') AND type IN {TYPES_SQL}"  # noqa: S608
# Everything the processing derives; truncated (and the pre-existing accounts put back) before each phase.
DERIVED_PREFIXES = ("workspaces_", "linking_", "alerts_", "sync_", "triggers_")
DERIVED_TABLES = ("events_workspacelock", "auditlog_logentry", "django_q_task", "django_q_ormq")
# The folded fields: identical whichever way the backlog was drained (the fold is pure).
FOLD_CHECKSUM = """
SELECT md5(coalesce(string_agg(concat_ws('|', workspace_id, status, email, name, plan, mrr::text, currency,
       subscription_id, billing_interval, trial_started_at::text, trial_expires_at::text, converted_at::text,
       churned_at::text, churn_reason, trial_history::text, last_event_at::text), ',' ORDER BY workspace_id), ''))
FROM workspaces_workspace
"""
LINKS_CHECKSUM = """
SELECT md5(coalesce(string_agg(concat_ws('|', w.workspace_id, l.email, a.domain, c.email, w.needs_review),
       ',' ORDER BY w.workspace_id), ''))
FROM workspaces_workspace w LEFT JOIN workspaces_lead l ON l.id = w.lead_id
LEFT JOIN workspaces_account a ON a.id = w.account_id LEFT JOIN workspaces_contact c ON c.id = w.contact_id
"""


# --- the child process (Django) --------------------------------------------------------------------------


def child_main(args: argparse.Namespace) -> int:
    """Runs inside django_env(): enqueue the backlog for the cluster, or process it in-process."""
    django_setup()
    keys = json.loads(Path(args.keys_file).read_text())
    chunks = [keys[i : i + args.chunk] for i in range(0, len(keys), args.chunk)]
    if args.child == "enqueue":
        from events.services import enqueue_workspaces

        start_wall, t0 = time.time(), time.monotonic()
        enqueue_workspaces(workspace_keys=keys, chunk=args.chunk)
        emit({"result": {"start_wall": start_wall, "enqueue_seconds": time.monotonic() - t0, "tasks": len(chunks)}})
        return 0
    from processing.tasks import process_workspaces

    claimed = failed = 0
    start_wall, t0 = time.time(), time.monotonic()
    for chunk in chunks:
        outcome = process_workspaces(chunk)
        claimed += outcome["claimed"]
        failed += outcome["failed"]
    seconds = time.monotonic() - t0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    emit({"result": {"start_wall": start_wall, "seconds": seconds, "claimed": claimed, "failed": failed,
                     "tasks": len(chunks), "peak_rss_mb": round(proc_status().get("VmHWM", 0) / 1024, 1),
                     "cpu_seconds": usage.ru_utime + usage.ru_stime}})  # fmt: skip
    return 0


# --- the database ------------------------------------------------------------------------------------------


def load_backlog(args: argparse.Namespace, dsn: str) -> dict[str, Any]:
    t0 = time.monotonic()
    domains = domains_of(workspaces=args.workspaces, seed=args.seed)
    accounts = insert_accounts(dsn, domains[: len(domains) // 2])
    rows = lifecycle_rows(events=args.events, workspaces=args.workspaces, seed=args.seed, status="new")
    loaded = copy_events(dsn, rows, total=args.events, label="load (COPY)", quiet=args.no_progress)
    vacuum_analyze(dsn, "events_event")
    counts = event_counts(dsn)
    return {
        "events": loaded,
        "workspaces": args.workspaces,
        "company_domains": len(domains),
        "preexisting_accounts": accounts,
        "type_mix": type_mix(counts),
        "load_seconds": round(time.monotonic() - t0, 1),
    }


def reset_state(dsn: str, args: argparse.Namespace) -> None:
    """Every event back to `new` as if just received (the sweeper looks at received_at), every derived
    row gone, the pre-existing accounts back."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        tables = [
            name
            for (name,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            if name.startswith(DERIVED_PREFIXES) or name in DERIVED_TABLES
        ]
        conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
        conn.execute(
            "UPDATE events_event SET status = 'new', retry_count = 0, next_attempt_at = NULL, notes = '',"
            " lease_owner = '', lease_expires_at = NULL, completed_at = NULL, received_at = now()"
        )
    domains = domains_of(workspaces=args.workspaces, seed=args.seed)
    insert_accounts(dsn, domains[: len(domains) // 2])
    vacuum_analyze(dsn)


def verify(dsn: str, args: argparse.Namespace) -> dict[str, Any]:
    """After a phase: every lifecycle event completed, one workspace per key, nothing in error/review."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        q = conn.execute
        by_status = dict(q(f"SELECT status, count(*) FROM events_event WHERE type IN {TYPES_SQL} GROUP BY 1"))  # noqa: S608
        bad = q("SELECT status, notes FROM events_event WHERE status IN ('error', 'review') ORDER BY id LIMIT 5")
        out = {
            "events_by_status": by_status,
            "all_completed": by_status.get("completed", 0) == args.events and len(by_status) == 1,
            "workspaces": q("SELECT count(*) FROM workspaces_workspace").fetchone()[0],
            "events_retried": q("SELECT count(*) FROM events_event WHERE retry_count > 0").fetchone()[0],
            "error_or_review": by_status.get("error", 0) + by_status.get("review", 0),
            "error_samples": [f"{status}: {notes}" for status, notes in bad.fetchall()],
            "leads": q("SELECT count(*) FROM workspaces_lead").fetchone()[0],
            "accounts": q("SELECT count(*) FROM workspaces_account").fetchone()[0],
            "contacts": q("SELECT count(*) FROM workspaces_contact").fetchone()[0],
            "review_items": dict(q("SELECT kind, count(*) FROM linking_reviewitem WHERE status = 'open' GROUP BY 1")),
            "needing_review": q("SELECT count(*) FROM workspaces_workspace WHERE needs_review").fetchone()[0],
            "fold_checksum": q(FOLD_CHECKSUM).fetchone()[0],
            "links_checksum": q(LINKS_CHECKSUM).fetchone()[0],
            "tasks": {f"{func} success={ok}": n for func, ok, n in
                      q("SELECT func, success, count(*) FROM django_q_task GROUP BY 1, 2 ORDER BY 1, 2").fetchall()},
        }  # fmt: skip
        sweeps = q("SELECT result FROM django_q_task WHERE func = 'processing.tasks.sweep' ORDER BY started")
        out["sweeps"] = [_unpickle(result) for (result,) in sweeps]
    out["workspaces_ok"] = out["workspaces"] == args.workspaces
    out["pass"] = out["all_completed"] and out["workspaces_ok"] and out["error_or_review"] == 0
    return out


def _unpickle(value: str | None) -> Any:
    """A django-q2 task result (picklefield: base64 of a pickle), from our own bench database."""
    try:
        return pickle.loads(base64.b64decode(value))  # noqa: S301
    except Exception:
        return value


def finished_at(dsn: str) -> float:
    """Wall-clock time of the last completion (more precise than the 1 s poll that saw it)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        value = conn.execute(f"SELECT max(completed_at) FROM events_event WHERE type IN {TYPES_SQL}").fetchone()[0]  # noqa: S608
    return value.timestamp() if value else time.time()


# --- one phase ------------------------------------------------------------------------------------------------


class Run:
    """What must be cleaned up, whatever happens."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.cluster: subprocess.Popen | None = None
        self.database_created = False
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-process-"))
        self.keys_file = self.tmp / "keys.json"

    def cleanup(self) -> None:
        if self.cluster is not None:
            stop_process(self.cluster)
            self.cluster = None
        if self.database_created and not self.args.keep_database:
            drop_database(self.args.database_url)
        if "redis" in self.args.phases:
            with contextlib.suppress(Exception):
                flush_broker(self.args.redis)
        scaffold.clean_tmp(self.tmp, keep_logs=self.args.keep_logs)


def run_phase(run: Run, name: str) -> dict[str, Any]:
    args = run.args
    dsn = libpq_dsn(args.database_url)
    say(f"{name}: resetting events to new and truncating derived tables")
    reset_state(dsn, args)
    broker = {"orm": "orm", "redis": args.redis}.get(name)
    if broker and broker != "orm":
        flush_broker(broker)
    log_path = run.tmp / f"{name}.log"
    child_args = ["--child", "enqueue" if broker else "inprocess", "--keys-file", str(run.keys_file),
                  "--chunk", str(args.chunk), "--database-url", args.database_url]  # fmt: skip
    env = django_env(args.database_url, broker=broker or "orm", workers=args.workers)
    busy_before = background_busy_pct(1.0)
    if broker:
        say(f"{name}: starting manage.py qcluster (Q_BROKER={broker}, Q_WORKERS={args.workers})")
        env = django_env(args.database_url, broker=broker, workers=args.workers, log_level="INFO")
        run.cluster = start_qcluster(env, log_path)
        root = run.cluster.pid
    roots = find_cpu_roots()
    if broker:
        roots["cluster"] = root
    cpu_before = cpu_snapshot(roots)
    child = subprocess.Popen(
        [sys.executable, str(SCRIPT), *child_args], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True
    )
    if not broker:
        root = child.pid  # its CPU is its own figure, reported when it ends
    memory = TreeMemory(root)
    progress = Progress(name, args.events, quiet=args.no_progress, unit=" ev")
    deadline = time.monotonic() + args.timeout
    result, open_events, polls, others = None, args.events, 0, {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            time.sleep(1.0)
            memory.sample()
            open_events = conn.execute(OPEN_SQL).fetchone()[0]
            polls += 1
            progress.show(args.events - open_events)
            if polls % 15 == 1:
                for line in scaffold.other_benchmarks():
                    others.setdefault(line.split()[0], line[:160])
            if result is None and child.poll() is not None:
                output = child.stdout.read().strip().splitlines()
                if child.returncode != 0 or not output:
                    raise RuntimeError(f"{name}: the child process failed (exit {child.returncode})")
                result = json.loads(output[-1])["result"]
            if result is not None and open_events == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}: {open_events} events still open after {args.timeout} s")
            if broker and run.cluster.poll() is not None:
                raise RuntimeError(f"{name}: qcluster exited with code {run.cluster.returncode}:\n{tail(log_path)}")
    memory.sample()
    cpu = cpu_delta(cpu_before, cpu_snapshot(roots))
    if not broker:
        cpu["inprocess"] = result["cpu_seconds"]  # it has exited: its own figure (includes django.setup)
    groups = ("postgres", "redis", "cluster", "inprocess")
    cpu["other"] = cpu["machine"] - sum(cpu.get(k, 0.0) for k in groups)  # e.g. another benchmark
    seconds = finished_at(dsn) - result["start_wall"]
    progress.show(args.events, final=True)
    out: dict[str, Any] = {
        "broker": broker or "none (in-process)",
        "seconds": round(seconds, 3),
        "events_per_second": round(args.events / seconds, 1),
        "workspaces_per_second": round(args.workspaces / seconds, 1),
        "tasks": result["tasks"],
        "polls": polls,
        "memory": memory.summary(),
        "cpu_seconds": {k: round(v, 1) for k, v in cpu.items() if not k.endswith("_sys")},
        "background_busy_pct_before": busy_before,
        "other_benchmarks_seen": sorted(others.values()),
    }
    if broker:
        out["enqueue_seconds"] = round(result["enqueue_seconds"], 3)
        out["cluster_stop_seconds"] = stop_process(run.cluster)
        run.cluster = None
        log = log_path.read_text(errors="replace").splitlines()
        errors = [line for line in log if log_level(line) in ("ERROR", "CRITICAL")]
        out["cluster_log"] = {"processed": sum(" Processed " in line for line in log), "errors": len(errors),
                              "error_samples": errors[:5]}  # fmt: skip
        if broker != "orm":
            flush_broker(broker)
    else:
        out["peak_rss_mb"] = result["peak_rss_mb"]
        out["failed_workspaces"] = result["failed"]
    out["verification"] = verify(dsn, args)
    v = out["verification"]
    if broker and out["cluster_log"]["errors"]:
        v["pass"] = False  # e.g. tasks refused by the cluster: the figures would not be the cluster's
        v["cluster_log_errors"] = out["cluster_log"]["errors"]
    verdict = "OK" if v["pass"] else "CHECK FAILED"
    say(f"{name}: {out['events_per_second']:,.0f} events/s over {out['seconds']:.1f} s; "
        f"{v['workspaces']} workspaces, events {v['events_by_status']}, {verdict}")  # fmt: skip
    return out


# --- the benchmark ------------------------------------------------------------------------------------------


def benchmark(run: Run) -> dict[str, Any]:
    args = run.args
    report: dict[str, Any] = start_conditions(args.wait_others)
    dsn = libpq_dsn(args.database_url)
    say(f"creating {db_name(args.database_url)} and migrating it")
    recreate_database(args.database_url)
    run.database_created = True
    migrate(django_env(args.database_url))
    report["postgres"] = server_info(args.database_url)
    report["backlog"] = load_backlog(args, dsn)
    run.keys_file.write_text(json.dumps([f"ws_{i:07d}" for i in range(args.workspaces)]))
    report["phases"] = {}
    for name in PHASES:
        if name in args.phases:
            report["phases"][name] = run_phase(run, name)
    report["machine_after"] = machine_info()
    return report


def judge(report: dict[str, Any]) -> dict[str, Any]:
    phases = report["phases"]
    targets: dict[str, Any] = {}
    base = phases.get("inprocess")
    for name, minimum in TARGETS.items():
        if name in phases and base:
            ratio = phases[name]["events_per_second"] / base["events_per_second"]
            report[f"ratio_{name}_to_inprocess"] = round(ratio, 3)
            targets[f"ratio_{name}_to_inprocess"] = {"target": f">= {minimum}", "value": round(ratio, 3),
                                                      "pass": ratio >= minimum}  # fmt: skip
    for name, phase in phases.items():
        v = phase["verification"]
        targets[f"{name}_correct"] = {
            "target": f"all {report['backlog']['events']} events completed, {report['backlog']['workspaces']} "
            "workspaces, none in error/review",
            "value": {"events": v["events_by_status"], "workspaces": v["workspaces"]},
            "pass": v["pass"],
        }
    checksums = {phase["verification"]["fold_checksum"] for phase in phases.values()}
    if len(phases) > 1:
        targets["same_fold_every_phase"] = {"target": "identical folded workspaces in every phase",
                                            "value": sorted(checksums), "pass": len(checksums) == 1}  # fmt: skip
        links = {phase["verification"]["links_checksum"] for phase in phases.values()}
        report["same_links_every_phase"] = len(links) == 1
    return targets


def print_summary(report: dict[str, Any], targets: dict[str, Any]) -> None:
    print()
    for name, p in report["phases"].items():
        mem = p["memory"]
        print(f"{name:<10} {report['backlog']['events']:>8,} events in {p['seconds']:8.1f} s = "
              f"{p['events_per_second']:8,.0f} events/s   peak RSS sum {mem['sum_of_peak_rss_mb']:7.1f} MB "
              f"(PSS {mem['peak_pss_total_mb']:.1f} MB, {mem['processes']} processes)")  # fmt: skip
    for name in TARGETS:
        key = f"ratio_{name}_to_inprocess"
        if key in report:
            print(f"ratio {name} ÷ in-process: {report[key]:.3f} (target >= {TARGETS[name]})")
    print()
    scaffold.print_targets(targets)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = scaffold.parser(
        "process",
        __doc__,
        "Compares a real `manage.py qcluster` (ORM and Redis brokers) against calling the same task"
        " function in one process.",
        redis=scaffold.REDIS_PHASE,
    )
    parser.add_argument("--events", type=int, default=100_000, help="lifecycle events in the backlog")
    parser.add_argument("--workspaces", type=int, default=20_000, help="workspaces the events are about")
    parser.add_argument("--chunk", type=int, default=100,
                        help="workspaces per task (enqueue_workspaces chunk); the in-process baseline "
                             "calls process_workspaces with the same chunks")  # fmt: skip
    parser.add_argument("--workers", type=int, default=2, help="Q_WORKERS of the cluster")
    parser.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES),
                        help="orm: cluster with the ORM broker; redis: cluster with the Redis broker; "
                             "inprocess: the baseline (needed for the ratios)")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=3600.0, help="give up on a phase after this many seconds")
    scaffold.common_arguments(
        parser,
        "process",
        database_url=DEFAULT_DATABASE_URL,
        redis=DEFAULT_REDIS,
        wait_others=scaffold.wait_others_help(),
        quick="5,000 events over 1,000 workspaces",
        keep_logs="keep the qcluster logs (their path is printed)",
        children=("enqueue", "inprocess"),
    )
    parser.add_argument("--keys-file", help=argparse.SUPPRESS)
    return scaffold.parse(parser, argv, quick={"events": 5_000, "workspaces": 1_000}, backlog=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return scaffold.run_benchmark("process", args, argv, Run, benchmark, judge, print_summary, child_main)


if __name__ == "__main__":
    sys.exit(main())
