#!/usr/bin/env python
"""Queue overhead benchmark: what one django-q2 task costs, with the ORM and the Redis broker.

The same function is run three ways on a throw-away PostgreSQL database, each from the same start:

1. direct  — the baseline: called in one process, one call after another (no queue at all).
2. orm     — enqueued one task per call (the engine's own events.services helpers) to a real
             `manage.py qcluster` with Q_BROKER=orm.
3. redis   — the same with Q_BROKER=redis://127.0.0.1:6379/11 (that Redis database is flushed).

Two functions: a trivial task (bench.queue_probe.noop: one append to a file, so the queue is all
there is to measure) and the real one, processing.tasks.process_workspaces of ONE workspace per task (the
finest grain the engine ever enqueues, so the queue's share is the largest it gets). Each is sent as a
burst (all at once: enqueue→complete throughput) and paced (an open-loop schedule well under capacity:
enqueue→complete latency p50/p99 counted from each task's due time). Figures, ratios to the direct
calls, per-task overhead in milliseconds and CPU, targets and checks go to bench/results/queue.json.

(Named queue_overhead.py, not queue.py: a bench/queue.py would shadow the standard library's `queue`
for every script run from bench/, and ingest.py, multiprocessing and django-q2 all import it.)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from argparse import Namespace
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
import scaffold
from common import (
    background_busy_pct,
    cpu_delta,
    cpu_snapshot,
    db_name,
    django_env,
    django_setup,
    drop_database,
    emit,
    find_cpu_roots,
    flush_broker,
    libpq_dsn,
    log_level,
    migrate,
    recreate_database,
    server_info,
    start_conditions,
    start_qcluster,
    stop_process,
)
from ingest import latency_stats
from process import FOLD_CHECKSUM, load_backlog, reset_state
from scaffold import REPO, Progress, machine_info, say, tail

SCRIPT = Path(__file__).resolve()
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/lifecycle_bench_queue"
DEFAULT_REDIS = "redis://127.0.0.1:6379/11"
PHASES = ("direct", "orm", "redis")
KINDS = ("trivial", "real")
MODES = ("burst", "paced")
TRIVIAL_FUNC = "bench.queue_probe.noop"
EVENTS_PER_WORKSPACE = 3
SAVED_PROBE = 20  # a burst ends when the results of its last 20 tasks are saved

# Targets, and why (bench/README.md says more):
# - real tasks of one workspace each, cluster ÷ direct throughput: the queue may cost at most what the
#   processing benchmark allows for coarse tasks (issue 3: 0.5 ORM, 0.7 Redis) even at the finest grain.
# - trivial tasks, paced: enqueue→complete p99 within a fraction of the 2 s Salesforce freshness budget
#   (ORM: it polls every 0.2 s, so up to 0.5 s; Redis: pushed, 0.1 s).
# - trivial tasks, burst: at most 20 (ORM) / 10 (Redis) ms of queue per task (50 / 100 tasks a second),
#   so a burst of 1,000 one-workspace tasks costs the queue seconds, not minutes.
TARGET_REAL_RATIO = {"orm": 0.5, "redis": 0.7}
TARGET_PACED_P99_MS = {"orm": 500.0, "redis": 100.0}
TARGET_TRIVIAL_MS_PER_TASK = {"orm": 20.0, "redis": 10.0}


# --- the child process (Django): call directly, or enqueue ---------------------------------------------


def child_main(args: argparse.Namespace) -> int:
    """Set up, say ready, wait for `go` on stdin, then call (direct) or enqueue every item on schedule."""
    django_setup()
    from django.db import connection

    plan = json.loads(Path(args.plan_file).read_text())
    tag, items, rate = plan["tag"], plan["items"], plan["rate"]
    call = _callable(args.child, plan["kind"], tag)
    connection.ensure_connection()
    emit({"ready": True})
    sys.stdin.readline()
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    starts, lags, task_ids = [], [], []
    t0 = time.time()
    for n, item in enumerate(items):
        if rate:
            due = t0 + n / rate
            if (wait := due - time.time()) > 0:
                time.sleep(wait)
            lags.append(time.time() - due)
            starts.append(due)  # latency counts from the due time: a late start is not hidden
        else:
            starts.append(time.time())
        task_ids.append(call(item))
    end = time.time()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime - usage0.ru_utime - usage0.ru_stime
    ids = task_ids if args.child == "enqueue" else []
    emit({"result": {"starts": starts, "end": end, "cpu_seconds": cpu, "send_lag": lags, "task_ids": ids}})
    return 0


def _callable(how: str, kind: str, tag: str) -> Any:
    if how == "direct" and kind == "trivial":
        from bench.queue_probe import noop

        return lambda index: noop(tag, index)
    if how == "direct":
        from processing.tasks import process_workspaces

        return lambda key: process_workspaces([key])
    if kind == "trivial":
        from events.services import async_task  # the engine's enqueue: one broker connection per process

        return lambda index: async_task(TRIVIAL_FUNC, tag, index)
    from events.services import async_task

    # Exactly what events.services.enqueue_workspaces(workspace_keys=[key], chunk=1) sends; called
    # directly only to keep the task id it returns.
    return lambda key: async_task("processing.tasks.process_workspaces", [key], False, q_options={"group": "process"})


# --- completions ---------------------------------------------------------------------------------------------


def probe_completions(path: Path, tag: str) -> tuple[dict[int, float], int]:
    """{index: unix time} of the trivial tasks that ran for this tag, and how many ran more than once."""
    done: dict[int, float] = {}
    runs = 0
    prefix = f"{tag} "
    with contextlib.suppress(FileNotFoundError), path.open() as lines:
        for line in lines:
            if line.startswith(prefix):
                _, index, at = line.split()
                runs += 1
                done.setdefault(int(index), float(at))
    return done, runs - len(done)


def results_saved(dsn: str, task_ids: list[str]) -> bool:
    """Has the cluster's monitor saved these tasks' results (and, ORM, acknowledged them)?

    A burst is not done when the workers have run it: django-q2's monitor saves each result (and prunes to
    `save_limit`) one by one, and a worker that recycles (every 500 tasks) cannot exit, so no new worker
    starts, until the monitor has read its results. The last tasks of a burst are the newest results,
    so `save_limit` never prunes them before they are seen here.
    """
    with psycopg.connect(dsn, autocommit=True) as conn:
        saved = conn.execute("SELECT count(*) FROM django_q_task WHERE id = ANY(%s)", [task_ids]).fetchone()[0]
    return saved == len(task_ids)


def workspace_completions(dsn: str, keys: list[str]) -> dict[str, float]:
    """{workspace key: unix time its last event was completed} for workspaces with every event completed."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT workspace_key, extract(epoch FROM max(completed_at)) FROM events_event"
            " WHERE workspace_key = ANY(%s) GROUP BY 1 HAVING bool_and(status = 'completed')",
            [keys],
        ).fetchall()
    return {key: float(at) for key, at in rows}


# --- one measurement ---------------------------------------------------------------------------------------


class Run:
    """What must be cleaned up, whatever happens."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.dsn = libpq_dsn(args.database_url)
        self.cluster: subprocess.Popen | None = None
        self.child: subprocess.Popen | None = None
        self.database_created = False
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-queue-"))
        self.probe_file = self.tmp / "probe.log"
        os.environ["BENCH_QUEUE_PROBE_FILE"] = str(self.probe_file)  # inherited by the cluster and children
        self.others: dict[str, str] = {}

    def cleanup(self) -> None:
        if self.child is not None and self.child.poll() is None:
            self.child.kill()
            self.child.wait(timeout=10)
        if self.cluster is not None:
            stop_process(self.cluster)
            self.cluster = None
        if self.database_created and not self.args.keep_database:
            drop_database(self.args.database_url)
        if "redis" in self.args.phases:
            with contextlib.suppress(Exception):
                flush_broker(self.args.redis)
        scaffold.clean_tmp(self.tmp, keep_logs=self.args.keep_logs, always=[self.probe_file])

    def error_logs(self) -> str:
        return "\n".join(f"{log.name}:\n{tail(log)}" for log in sorted(self.tmp.glob("qcluster-*.log")))


def queue_env(args: argparse.Namespace, broker: str, *, log_level: str = "WARNING") -> dict[str, str]:
    """django_env() of common.py; with --save-limit, the engine's settings with another save_limit."""
    env = django_env(args.database_url, broker=broker, workers=args.workers, log_level=log_level)
    if args.save_limit is not None:
        env.update(DJANGO_SETTINGS_MODULE="bench.queue_settings", BENCH_Q_SAVE_LIMIT=str(args.save_limit))
    return env


def start_child(run: Run, how: str, plan: dict[str, Any], broker: str) -> subprocess.Popen:
    plan_file = run.tmp / f"plan-{plan['tag']}.json"
    plan_file.write_text(json.dumps(plan))
    env = queue_env(run.args, broker)
    child = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--child", how, "--plan-file", str(plan_file)],
        cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
    )  # fmt: skip
    run.child = child
    line = child.stdout.readline()
    if not line or not json.loads(line).get("ready"):
        child.wait(timeout=30)
        raise RuntimeError(f"the {how} child did not start (exit {child.returncode})")
    return child


def measure(run: Run, phase: str, kind: str, mode: str, items: list, broker: str) -> dict[str, Any]:
    """Run one workload (direct calls or enqueued tasks) and wait until every item has completed."""
    args = run.args
    tag = f"{phase}-{kind}-{mode}"
    rate = (args.trivial_rate if kind == "trivial" else args.real_rate) if mode == "paced" else 0.0
    how = "direct" if phase == "direct" else "enqueue"
    child = start_child(run, how, {"tag": tag, "kind": kind, "items": items, "rate": rate}, broker)
    roots = find_cpu_roots()
    if run.cluster is not None:
        roots["cluster"] = run.cluster.pid
    cpu_before = cpu_snapshot(roots)
    child.stdin.write("go\n")
    child.stdin.flush()
    progress = Progress(tag, len(items), quiet=args.no_progress, unit=" tasks" if how == "enqueue" else " calls")
    deadline = time.monotonic() + args.timeout
    result, done, duplicates, polls = None, {}, 0, 0
    while True:
        time.sleep(0.25 if result is None else 0.5)
        polls += 1
        if result is None and child.poll() is not None:
            output = child.stdout.read().strip().splitlines()
            if child.returncode != 0 or not output:
                raise RuntimeError(f"{tag}: the child process failed (exit {child.returncode})")
            result = json.loads(output[-1])["result"]
        if kind == "trivial":
            done, duplicates = probe_completions(run.probe_file, tag)
        else:
            done = workspace_completions(run.dsn, items)
        progress.show(len(done))
        if polls % 40 == 1:
            for line in scaffold.other_benchmarks(
                "bench/ingest.py|bench/salesforce_sync.py|bench/process.py|bench/replay.py"
            ):
                run.others.setdefault(line.split()[0], line[:160])
        finished = result is not None and len(done) >= len(items)
        if finished and (how == "direct" or results_saved(run.dsn, result["task_ids"][-SAVED_PROBE:])):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"{tag}: {len(items) - len(done)} of {len(items)} not completed after {args.timeout} s")
        if run.cluster is not None and run.cluster.poll() is not None:
            raise RuntimeError(f"{tag}: qcluster exited with code {run.cluster.returncode}")
    saved_at = time.time()
    cpu = cpu_delta(cpu_before, cpu_snapshot(roots))
    progress.show(len(done), final=True)
    run.child = None
    return summarise(items, result, done, duplicates, cpu, rate=rate, how=how, saved_at=saved_at)


def summarise(
    items: list, result: dict, done: dict, duplicates: int, cpu: dict, *, rate: float, how: str, saved_at: float
) -> dict[str, Any]:
    """Burst: throughput from the first start until every task is done with — run, and its result saved by
    the cluster's monitor (ORM: acknowledged). Paced: latency of each item, from the moment it was actually
    sent (the queue's share) and from its due time (the client's lateness too)."""
    starts = result["starts"]
    first, last, n = min(starts), max(done.values()), len(items)
    ran_seconds = last - first
    seconds = max(ran_seconds, saved_at - first) if how == "enqueue" else ran_seconds
    cpu_ms = {"executor": cpu.get("cluster", result["cpu_seconds"] if how == "direct" else 0.0)}
    if how == "enqueue":
        cpu_ms["enqueuer"] = result["cpu_seconds"]
    cpu_ms.update({k: cpu.get(k, 0.0) for k in ("postgres", "redis")})
    out: dict[str, Any] = {"tasks" if how == "enqueue" else "calls": n, "seconds": round(seconds, 3)}
    if rate:
        sent = [due + lag for due, lag in zip(starts, result["send_lag"], strict=True)]
        out["rate"], out["achieved_rate"] = rate, round(n / seconds, 1)
        out["latency_ms"] = latency_stats(sorted(max(0.0, done[i] - t) for i, t in zip(items, sent, strict=True)))
        out["latency_from_due_ms"] = latency_stats(
            sorted(max(0.0, done[i] - t) for i, t in zip(items, starts, strict=True))
        )
        out["send_lag_ms"] = latency_stats(sorted(result["send_lag"]))
    else:
        out["per_second"] = round(n / seconds, 1) if seconds > 0 else None
        out["ms_per_item"] = round(1000 * seconds / n, 3)
        if how == "enqueue":  # the workers alone, before the monitor caught up with the results
            out["ran_per_second"] = round(n / ran_seconds, 1) if ran_seconds > 0 else None
            out["results_lag_seconds"] = round(max(0.0, saved_at - last), 2)
        out["latency_ms"] = latency_stats(sorted(max(0.0, done[i] - t) for i, t in zip(items, starts, strict=True)))
        out["submit_seconds"] = round(result["end"] - first, 3)  # enqueueing (or calling) everything
    out["ran_twice"] = duplicates
    out["cpu_ms_per_item"] = {k: round(1000 * v / n, 3) for k, v in cpu_ms.items()}
    out["machine_busy_pct"] = round(cpu["machine_busy_pct"], 1)
    return out


# --- phases ----------------------------------------------------------------------------------------------


def backlog_args(args: argparse.Namespace) -> Namespace:
    """What process.py's load_backlog/reset_state read: one workspace per real task, burst and paced."""
    workspaces = args.real_tasks + args.real_paced
    return Namespace(
        events=workspaces * EVENTS_PER_WORKSPACE, workspaces=workspaces, seed=args.seed, no_progress=args.no_progress
    )


def run_phase(run: Run, phase: str, keys: list[str]) -> dict[str, Any]:
    args = run.args
    say(f"{phase}: events back to new, derived tables truncated")
    reset_state(run.dsn, backlog_args(args))
    broker = {"orm": "orm", "redis": args.redis}.get(phase, "orm")
    if phase == "redis":
        flush_broker(broker)
    out: dict[str, Any] = {"broker": broker if phase != "direct" else "none (direct calls)"}
    out["background_busy_pct_before"] = background_busy_pct(1.0)
    log_path = run.tmp / f"qcluster-{phase}.log"
    if phase != "direct":
        say(f"{phase}: starting manage.py qcluster (Q_BROKER={broker}, Q_WORKERS={args.workers})")
        t0 = time.monotonic()
        run.cluster = start_qcluster(queue_env(args, broker, log_level="INFO"), log_path)
        out["cluster_start_seconds"] = round(time.monotonic() - t0, 2)
        out["idle_cluster_cpu_pct"] = idle_cpu_pct(run.cluster.pid, args.idle_seconds)
    workloads = {
        ("trivial", "burst"): list(range(args.trivial_tasks)),
        ("trivial", "paced"): list(range(args.trivial_paced)),
        ("real", "burst"): keys[: args.real_tasks],
        ("real", "paced"): keys[args.real_tasks :],
    }
    for kind in args.kinds:
        out[kind] = {}
        for mode in MODES:
            out[kind][mode] = m = measure(run, phase, kind, mode, workloads[kind, mode], broker)
            speed = f"{m['per_second']:,} /s" if mode == "burst" else f"{m['achieved_rate']} /s paced"
            say(f"{phase} {kind} {mode}: {speed}, p50 {m['latency_ms']['p50']:,.1f} ms, "
                f"p99 {m['latency_ms']['p99']:,.1f} ms")  # fmt: skip
    if phase != "direct":
        out["cluster_stop_seconds"] = stop_process(run.cluster)
        run.cluster = None
        log = log_path.read_text(errors="replace").splitlines()
        errors = [line for line in log if log_level(line) in ("ERROR", "CRITICAL")]
        out["cluster_log"] = {"errors": len(errors), "error_samples": errors[:5]}
        out["left_in_broker"] = left_in_broker(run.dsn, broker)
        if phase == "redis":
            flush_broker(broker)
    out["verification"] = verify(run, out, keys)
    return out


def idle_cpu_pct(root: int, seconds: float) -> float:
    """CPU the running cluster's process tree uses with nothing to do (polling, heartbeats), % of one core."""
    before = cpu_snapshot({"cluster": root})
    time.sleep(seconds)
    delta = cpu_delta(before, cpu_snapshot({"cluster": root}))
    return round(100 * delta["cluster"] / seconds, 2)


def left_in_broker(dsn: str, broker: str) -> int:
    """Tasks still queued after every completion was seen (ORM: rows not yet acknowledged)."""
    if broker == "orm":
        with psycopg.connect(dsn, autocommit=True) as conn:
            return conn.execute("SELECT count(*) FROM django_q_ormq").fetchone()[0]
    import redis

    with contextlib.closing(redis.Redis.from_url(broker)) as client:
        return sum(client.llen(key) for key in client.scan_iter("django_q:*:q"))


def verify(run: Run, phase: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    """Every real workspace folded (the same fold in every phase), nothing ran twice, nothing failed."""
    with psycopg.connect(run.dsn, autocommit=True) as conn:
        by_status = dict(conn.execute("SELECT status, count(*) FROM events_event GROUP BY 1").fetchall())
        workspaces = conn.execute("SELECT count(*) FROM workspaces_workspace").fetchone()[0]
        checksum = conn.execute(FOLD_CHECKSUM).fetchone()[0]
    ran_twice = sum(m.get("ran_twice", 0) for kind in KINDS for m in phase.get(kind, {}).values())
    real = "real" in run.args.kinds
    out = {
        "events_by_status": by_status,
        "workspaces": workspaces,
        "fold_checksum": checksum,
        "ran_twice": ran_twice,
        "cluster_errors": phase.get("cluster_log", {}).get("errors", 0),
    }
    out["pass"] = (
        (not real or (workspaces == len(keys) and set(by_status) == {"completed"}))
        and ran_twice == 0
        and out["cluster_errors"] == 0
    )
    return out


# --- the benchmark ------------------------------------------------------------------------------------------


def remove_schedules(dsn: str) -> list[str]:
    """The migrations' schedules (sweeper, drain, alerts…) would add tasks of their own to what is measured;
    the sweeper would even re-enqueue the measured workspaces in chunks. This measures tasks, not schedules."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        names = [name for (name,) in conn.execute("DELETE FROM django_q_schedule RETURNING name")]
    return sorted(names)


def benchmark(run: Run) -> dict[str, Any]:
    args = run.args
    report: dict[str, Any] = start_conditions(args.wait_others)
    say(f"creating {db_name(args.database_url)} and migrating it")
    recreate_database(args.database_url)
    run.database_created = True
    migrate(django_env(args.database_url))
    report["postgres"] = server_info(args.database_url)
    report["schedules_removed"] = remove_schedules(run.dsn)
    keys: list[str] = []
    if "real" in args.kinds:
        report["backlog"] = load_backlog(backlog_args(args), run.dsn)
        keys = [f"ws_{i:07d}" for i in range(backlog_args(args).workspaces)]
    report["phases"] = {name: run_phase(run, name, keys) for name in PHASES if name in args.phases}
    report["other_benchmarks_seen"] = sorted(run.others.values())
    report["machine_after"] = machine_info()
    return report


def judge(report: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    phases = report["phases"]
    targets: dict[str, Any] = {}
    ratios: dict[str, float] = {}
    direct = phases.get("direct")
    for broker in ("orm", "redis"):
        cluster = phases.get(broker)
        if not cluster:
            continue
        for kind in args.kinds:
            burst = cluster[kind]["burst"]
            if direct:
                base = direct[kind]["burst"]
                ratios[f"{kind}_{broker}_to_direct"] = round(burst["per_second"] / base["per_second"], 4)
                burst["overhead_ms_per_task"] = round(burst["ms_per_item"] - base["ms_per_item"], 3)
        if "real" in args.kinds and direct:
            ratio, minimum = ratios[f"real_{broker}_to_direct"], TARGET_REAL_RATIO[broker]
            targets[f"real_ratio_{broker}_to_direct"] = {
                "target": f">= {minimum}", "value": ratio, "pass": ratio >= minimum}  # fmt: skip
        if "trivial" in args.kinds:
            per_task, limit = cluster["trivial"]["burst"]["ms_per_item"], TARGET_TRIVIAL_MS_PER_TASK[broker]
            targets[f"trivial_ms_per_task_{broker}"] = {
                "target": f"<= {limit:.0f}", "value": per_task, "pass": per_task <= limit}  # fmt: skip
            p99, limit = cluster["trivial"]["paced"]["latency_ms"]["p99"], TARGET_PACED_P99_MS[broker]
            targets[f"trivial_paced_p99_ms_{broker}"] = {
                "target": f"<= {limit:.0f}", "value": p99, "pass": p99 <= limit}  # fmt: skip
    report["ratios"] = ratios
    for name, phase in phases.items():
        v = phase["verification"]
        targets[f"{name}_correct"] = {
            "target": "every task completed once, every workspace folded, no cluster errors",
            "value": {"ran_twice": v["ran_twice"], "workspaces": v["workspaces"], "errors": v["cluster_errors"]},
            "pass": v["pass"],
        }
    if "real" in args.kinds and len(phases) > 1:
        checksums = sorted({phase["verification"]["fold_checksum"] for phase in phases.values()})
        targets["same_fold_every_phase"] = {"target": "identical folded workspaces in every phase",
                                            "value": checksums, "pass": len(checksums) == 1}  # fmt: skip
    return targets


def print_summary(report: dict[str, Any], targets: dict[str, Any]) -> None:
    print()
    print(f"{'phase':<7} {'kind':<8} {'mode':<6} {'items':>6} {'per s':>11} {'ms/item':>9} {'p50 ms':>9} "
          f"{'p99 ms':>9} {'exec CPU ms':>11}")  # fmt: skip
    for name, phase in report["phases"].items():
        for kind in KINDS:
            for mode, m in phase.get(kind, {}).items():
                n = m.get("tasks", m.get("calls"))
                speed = f"{m['per_second']:,.1f}" if mode == "burst" else f"({m['achieved_rate']})"
                per_item = f"{m['ms_per_item']:.2f}" if mode == "burst" else "-"
                print(f"{name:<7} {kind:<8} {mode:<6} {n:>6} {speed:>11} {per_item:>9} "
                      f"{m['latency_ms']['p50']:>9.1f} {m['latency_ms']['p99']:>9.1f} "
                      f"{m['cpu_ms_per_item']['executor']:>11.2f}")  # fmt: skip
        if "idle_cluster_cpu_pct" in phase:
            print(f"{name:<7} idle cluster: {phase['idle_cluster_cpu_pct']:.1f} % of one core")
    for key, value in report.get("ratios", {}).items():
        print(f"ratio {key}: {value}")
    print()
    scaffold.print_targets(targets)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = scaffold.parser(
        "queue",
        __doc__,
        "Compares enqueue→complete through a real `manage.py qcluster` (ORM and Redis brokers) with calling"
        " the same function in one process.",
        redis=scaffold.REDIS_PHASE,
    )
    parser.add_argument("--trivial-tasks", type=int, default=5000, help="trivial tasks in the burst")
    parser.add_argument("--trivial-paced", type=int, default=300, help="trivial tasks sent paced")
    parser.add_argument("--trivial-rate", type=float, default=20.0, help="trivial tasks a second when paced")
    parser.add_argument("--real-tasks", type=int, default=2000,
                        help="real tasks (one workspace each, ~3 events) in the burst")  # fmt: skip
    parser.add_argument("--real-paced", type=int, default=100, help="real tasks sent paced (other workspaces)")
    parser.add_argument("--real-rate", type=float, default=2.0, help="real tasks a second when paced")
    parser.add_argument("--idle-seconds", type=float, default=10.0,
                        help="after the cluster starts, measure its idle CPU this long")  # fmt: skip
    parser.add_argument("--workers", type=int, default=1,
                        help="Q_WORKERS of the cluster; 1 compares one executor with one direct caller")  # fmt: skip
    parser.add_argument("--save-limit", type=int, default=None, metavar="N",
                        help="experiment: run the cluster with django-q2 save_limit N (>= 0) instead of the "
                             "engine's (bench/queue_settings.py); the targets still apply")  # fmt: skip
    parser.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES),
                        help="direct: the baseline (needed for the ratios); orm, redis: the cluster")  # fmt: skip
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS), help="which functions")
    parser.add_argument("--timeout", type=float, default=1800.0, help="give up on a measurement after this long")
    scaffold.common_arguments(
        parser,
        "queue",
        database_url=DEFAULT_DATABASE_URL,
        redis=DEFAULT_REDIS,
        quick="1,000 + 100 trivial, 300 + 30 real tasks",
        children=("direct", "enqueue"),
        keep_logs="keep the qcluster logs (their path is printed)",
    )
    parser.add_argument("--plan-file", help=argparse.SUPPRESS)
    quick = {"trivial_tasks": 1000, "trivial_paced": 100, "real_tasks": 300, "real_paced": 30, "idle_seconds": 3.0}
    args = scaffold.parse(parser, argv, quick=quick)
    for name in ("trivial_tasks", "trivial_paced", "real_tasks", "real_paced", "workers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.save_limit is not None and args.save_limit < 0:
        parser.error("--save-limit must be >= 0: with a negative one successful results are not saved at all")
    if args.trivial_rate <= 0 or args.real_rate <= 0:
        parser.error("--trivial-rate and --real-rate must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return scaffold.run_benchmark(
        "queue", args, argv, Run, benchmark, partial(judge, args=args), print_summary, child_main
    )


if __name__ == "__main__":
    sys.exit(main())
