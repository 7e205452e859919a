#!/usr/bin/env python
"""Usage freshness benchmark: usage event accepted → its workspace's profile, cohorts and stage re-evaluated.

A real gunicorn (config.wsgi, gthread) and a real `manage.py qcluster` (Redis broker) on PostgreSQL take
`usage.recorded` events in signed batches (CONTRACT §2b, `POST /webhooks/provisioning/batch/`) at a steady
--rate for --seconds (open loop: batch i is due at t0 + i × batch size / rate). The workspaces already have
90 days of usage rollups and an evaluated profile (bench/behaviour.py's generator, then one sweep), so each
re-evaluation reads real histories.

A poller (its own connection, every --poll-ms) watches two things: the event row leaving `new` (rolled up:
its `completed_at`) and the workspace's `usage_profile.evaluated_at` reaching that `completed_at` (an
evaluation that began after the event was counted, so its metrics, cohorts and stage include it). Freshness
of an event = the poll that first saw both − the 202 answer of its batch. Target: p99 ≤ 1 s (issue 22 §5).

Each --modes run (BEHAVIOUR_PROFILES on, then off, each on a fresh clone) also reads the CPU of every process
tree from /proc (gunicorn, qcluster, PostgreSQL, Redis, the machine) from the first measured batch until the
last event is rolled up: CPU per usage event, and processing (qcluster + this database's PostgreSQL backends +
Redis) off ÷ on, the live counterpart of bench/behaviour.py's processing ratio (target ≥ 0.7). SALESFORCE_SYNC
is off here: stage changes to Salesforce are bench/salesforce_sync.py's. With --pairs N (3; quick runs 1) the
modes run N times each in alternating order (on off, off on, …): the ratio is over each mode's mean CPU per
event, since one run's CPU moved by up to a quarter between runs on this shared machine, and the freshness
target is judged on the worst run.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import secrets
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import scaffold
from behaviour import FEATURES, generate
from common import (
    LiveRun,
    clone_database,
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
    run_child,
    server_info,
    start_conditions,
    start_qcluster,
    stop_process,
    template_url,
)
from ingest import BatchSender, BenchEvent, sign_batches
from salesforce_sync import free_port, own_cpu, start_gunicorn, stats_ms
from scaffold import Progress, machine_info, say

SCRIPT = Path(__file__).resolve()
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/lifecycle_bench_usage_freshness"
DEFAULT_REDIS = "redis://127.0.0.1:6379/12"
OTHER_BENCHMARKS = "bench/ingest.py|bench/salesforce_sync.py|bench/process.py|bench/behaviour.py"
MODES = ("on", "off")
TARGET_P99_MS = 1000.0  # accepted → profile re-evaluated (issue 22 §5)
MIN_COST_RATIO = 0.7  # processing CPU per usage event, profiles off ÷ on
BACKEND_SAMPLE_SECONDS = 0.5  # how often this database's backends' CPU is read
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
OUR_POSTGRES = "postgres (this database's backends)"
PROCESSING = "processing (qcluster + this database's backends + redis)"


# --- the events ---------------------------------------------------------------------------------------------


def usage_events(count: int, *, workspaces: int, seed: int, prefix: str) -> list[BenchEvent]:
    """`count` usage.recorded events over `workspaces` workspaces (uniformly: the hardest case for coalescing,
    every event most likely another workspace's), stamped now; the features and users of bench/behaviour.py."""
    rng = random.Random(seed)
    now = datetime.now(UTC).replace(microsecond=0)
    stamp = now.isoformat().replace("+00:00", "Z")
    events = []
    for n in range(count):
        ws = f"ws_{rng.randrange(workspaces):07d}"
        product, feature = rng.choice(FEATURES)
        data = {"workspace_id": ws, "feature": feature, "product": product, "count": rng.randint(1, 5),
                "user_email": f"user{rng.randrange(5)}.{ws[3:]}@customer.example.com",
                "duration_seconds": round(rng.uniform(1, 600), 1),
                "outcome": "error" if rng.random() < 0.03 else "success"}  # fmt: skip
        body = json.dumps({"type": "usage.recorded", "timestamp": stamp, "data": data})
        events.append(BenchEvent(f"{prefix}_{n:08d}", "usage.recorded", now, ws, body))
    return events


# --- sending --------------------------------------------------------------------------------------------------


@dataclass
class Sent:
    """One batch: when it was due, sent and answered (monotonic), its wall-clock send time, and the answer."""

    due: float
    sent: float = 0.0
    answered: float = 0.0
    sent_wall: datetime | None = None
    status: str = ""


def send_batches(port: int, requests: list[tuple[bytes, dict[str, str]]], *, every: float, threads: int,
                 label: str, quiet: bool, on_answer: Callable[[int, Sent], None],
                 status_line: Any = None) -> list[Sent]:  # fmt: skip
    """Open loop: request i is due at t0 + i × every; `threads` keep-alive connections send them;
    `on_answer(i, sent)` runs as each answer arrives (so the poller starts watching at once)."""
    t0 = time.monotonic() + 0.2
    results = [Sent(due=t0 + i * every) for i in range(len(requests))]
    lock = threading.Lock()
    counter = iter(range(len(requests)))

    def work() -> None:
        sender = BatchSender(f"127.0.0.1:{port}")
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            sent = results[i]
            if (wait := sent.due - time.monotonic()) > 0:
                time.sleep(wait)
            sent.sent, sent.sent_wall = time.monotonic(), datetime.now(UTC)
            try:
                sent.status = sender.send(requests[i])
            except Exception as exc:  # a failed request is a result, not a crash
                sent.status = type(exc).__name__
                sender.reset()
                sender = BatchSender(f"127.0.0.1:{port}")
            sent.answered = time.monotonic()
            on_answer(i, sent)
        sender.close()

    workers = [threading.Thread(target=work, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    progress = Progress(label, len(requests), quiet=quiet, unit=" batches")
    progress.restart(t0)
    while any(worker.is_alive() for worker in workers):
        time.sleep(0.5)
        progress.show(sum(bool(r.status) for r in results), extra=status_line() if status_line else "")
    progress.show(len(requests), final=True, extra=status_line() if status_line else "")
    return results


# --- watching -------------------------------------------------------------------------------------------------


@dataclass
class Watched:
    workspace: str
    answered: float  # monotonic: the 202 of its batch
    completed_at: datetime | None = None
    rolled_up: float | None = None  # monotonic: the poll that first saw it rolled up
    fresh: float | None = None  # monotonic: the poll that first saw its profile evaluated after that


class BackendCpu:
    """CPU of this database's PostgreSQL backends only (pg_stat_activity → /proc), from `start()` on.

    The postmaster's whole tree also holds other databases' backends — other engineers' tests and
    benchmarks on this shared server — which made the processing figures of both modes drift with their load.
    A backend seen at the first sample after `start()` counts from its value then; one first seen later was
    born in the window and counts whole. A backend that ends between samples loses its last second at most.
    """

    def __init__(self) -> None:
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.baseline = False
        self.lock = threading.Lock()

    def start(self) -> None:
        with self.lock:
            self.first, self.last, self.baseline = {}, {}, True

    def sample(self, conn: psycopg.Connection) -> None:
        query = "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        pids = [row[0] for row in conn.execute(query)]
        values = {pid: cpu for pid in pids if (cpu := pid_cpu(pid)) is not None}
        with self.lock:
            for pid, cpu in values.items():
                self.first.setdefault(pid, cpu if self.baseline else 0.0)
                self.last[pid] = cpu
            self.baseline = False

    def seconds(self) -> float:
        with self.lock:
            return sum(self.last[pid] - first for pid, first in self.first.items())


def pid_cpu(pid: int) -> float | None:
    """utime + stime of a process in seconds (None if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class PollingThread(threading.Thread):
    """A watcher on its own connection: `poll(conn)` every `interval` until halted, this database's backends'
    CPU sampled on the way; an error is kept for the main thread to raise (a blind poller must not look like
    a slow engine). The live benchmarks' pollers (here, trigger_latency.py, timers.py) subclass it."""

    def __init__(self, dsn: str, interval: float) -> None:
        super().__init__(daemon=True)
        self.dsn, self.interval = dsn, interval
        self.polls, self.poll_seconds = 0, 0.0
        self.lock = threading.Lock()
        self.halt = threading.Event()
        self.error: BaseException | None = None
        self.backends = BackendCpu()

    def run(self) -> None:
        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                sampled = 0.0
                while not self.halt.is_set():
                    started = time.monotonic()
                    self.poll(conn)
                    if started - sampled >= BACKEND_SAMPLE_SECONDS or self.backends.baseline:
                        self.backends.sample(conn)
                        sampled = started
                    self.polls += 1
                    self.poll_seconds += time.monotonic() - started
                    self.halt.wait(max(0.0, self.interval - (time.monotonic() - started)))
        except Exception as exc:  # the main thread raises it
            self.error = exc

    def poll(self, conn: psycopg.Connection) -> None:
        raise NotImplementedError


class Poller(PollingThread):
    """Every `interval`: which watched events left `new`, and which profiles were evaluated since."""

    def __init__(self, dsn: str, interval: float, *, profiles: bool) -> None:
        super().__init__(dsn, interval)
        self.profiles = profiles
        self.events: dict[str, Watched] = {}
        self.rolling: set[str] = set()  # accepted, not yet seen rolled up
        self.evaluating: dict[str, set[str]] = defaultdict(set)  # workspace → rolled up, profile not yet seen
        self.evaluated: dict[str, datetime] = {}

    def expect(self, external_id: str, workspace: str, answered: float) -> None:
        with self.lock:
            self.events[external_id] = Watched(workspace, answered)
            self.rolling.add(external_id)

    def waiting(self) -> int:
        with self.lock:
            return len(self.rolling) + sum(len(ids) for ids in self.evaluating.values())

    def poll(self, conn: psycopg.Connection) -> None:
        """One look: rolled-up events (and their completed_at), then the profiles of the workspaces that have
        rolled-up events not yet reflected (only those: reading every recent profile cost the poller more CPU
        than the engine's gunicorn)."""
        with self.lock:
            rolling = list(self.rolling)
            pending = set(self.evaluating)
        new = {row[0] for row in conn.execute(
            "SELECT external_id FROM events_event WHERE status = 'new' AND type = 'usage.recorded'")}  # fmt: skip
        left = [external_id for external_id in rolling if external_id not in new]
        completed = dict(conn.execute(
            "SELECT external_id, completed_at FROM events_event"
            " WHERE source = 'provisioning' AND external_id = ANY(%s)",
            [left])) if left else {}  # fmt: skip
        if self.profiles:
            pending.update(self.events[external_id].workspace for external_id in left)
        evaluated = conn.execute(
            "SELECT workspace_key, evaluated_at FROM usage_profile WHERE workspace_key = ANY(%s)", [sorted(pending)]
        ).fetchall() if pending else []  # fmt: skip
        seen = time.monotonic()
        with self.lock:
            self.evaluated.update(evaluated)
            for external_id in left:
                watched = self.events[external_id]
                watched.rolled_up, watched.completed_at = seen, completed.get(external_id)
                self.rolling.discard(external_id)
                if self.profiles:
                    self.evaluating[watched.workspace].add(external_id)
            for workspace in [w for w in self.evaluating if w in self.evaluated]:
                ids = self.evaluating[workspace]
                for external_id in [i for i in ids if self._reflected(self.events[i], self.evaluated[workspace])]:
                    self.events[external_id].fresh = seen
                    ids.discard(external_id)
                if not ids:
                    del self.evaluating[workspace]

    @staticmethod
    def _reflected(watched: Watched, evaluated_at: datetime) -> bool:
        """An evaluation that began after the event was counted includes it (a rejected or reviewed event,
        without completed_at, counts as reflected once it left `new`)."""
        return watched.completed_at is None or evaluated_at >= watched.completed_at


# --- the Django child: the template's profiles ----------------------------------------------------------------


def child_main(args: argparse.Namespace) -> int:
    """Evaluate every workspace once (the steady state a live engine is in), as the sweep does."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    django_setup()
    from usage.services import behaviour_sweep

    t0 = time.monotonic()
    result = behaviour_sweep()
    emit({"result": {"visited": result.visited, "changed": result.changed, "seconds": time.monotonic() - t0}})
    return 0


# --- the phases ---------------------------------------------------------------------------------------------


class Run(LiveRun):
    """What must be cleaned up, whatever happens."""

    prefix = "bench-usage-freshness-"


def prepare_template(run: Run) -> dict[str, Any]:
    """Migrated, the workspaces and their rollups generated, every profile evaluated once."""
    args = run.args
    template = template_url(args.database_url)
    run.databases += [args.database_url, template]
    say(f"creating {db_name(template)}, migrating it, generating {args.workspaces:,} workspaces' usage history")
    recreate_database(template)
    migrate(django_env(template))
    dsn = libpq_dsn(template)
    out: dict[str, Any] = {"data": generate(dsn, args.workspaces, datetime.now(UTC).date().isoformat())}
    out["first_sweep"] = run_child(SCRIPT, ["--child", "sweep", "--database-url", template], django_env(template))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")
    say(f"template ready: {out['first_sweep']['visited']:,} profiles evaluated")
    return out


def run_mode(run: Run, mode: str) -> dict[str, Any]:
    """One live run with BEHAVIOUR_PROFILES `mode`: send, watch until every event is seen, account the CPU."""
    args = run.args
    clone_database(template_url(args.database_url), args.database_url)
    dsn = libpq_dsn(args.database_url)
    run.redis_used = True
    flush_broker(args.redis)
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    env = django_env(args.database_url, broker=args.redis, workers=args.q_workers, log_level="INFO")
    env.update({"PROVISIONING_WEBHOOK_SECRET": secret, "BEHAVIOUR_PROFILES": "1" if mode == "on" else "0",
                "SALESFORCE_SYNC": "off"})  # fmt: skip
    port = free_port()
    say(f"{mode}: gunicorn on 127.0.0.1:{port} (-w {args.gunicorn_workers} --threads {args.gunicorn_threads}), "
        f"qcluster (Q_WORKERS={args.q_workers}, {args.redis}), BEHAVIOUR_PROFILES {mode}")  # fmt: skip
    server = start_gunicorn(args, env, port, run.tmp / f"{mode}-gunicorn.log")
    run.procs.append(server)
    cluster = start_qcluster(env, run.tmp / f"{mode}-qcluster.log")
    run.procs.append(cluster)
    roots = {**find_cpu_roots(server.pid), "qcluster": cluster.pid}

    warm = usage_events(args.batch_size * 4, workspaces=args.workspaces, seed=args.seed + 1, prefix=f"w{mode}")
    events = usage_events(round(args.rate * args.seconds), workspaces=args.workspaces, seed=args.seed,
                          prefix=f"u{mode}")  # fmt: skip
    poller = Poller(dsn, args.poll_ms / 1000, profiles=mode == "on")
    poller.start()
    every = args.batch_size / args.rate
    send_batches(port, sign_batches(warm, secret, args.batch_size), every=every, threads=2,
                 label=f"{mode}: warm-up", quiet=True, on_answer=_watch(poller, warm, args.batch_size))  # fmt: skip
    _settle(poller, 60, f"{mode} warm-up", quiet=True)
    poller.events.clear()

    requests = sign_batches(events, secret, args.batch_size)
    cpu_before, own_before = cpu_snapshot(roots), own_cpu()
    poller.backends.start()

    def status_line() -> str:
        return f"  waiting {poller.waiting():,}"

    sent = send_batches(port, requests, every=every, threads=args.client_threads, label=f"{mode}: sending",
                        quiet=args.no_progress, on_answer=_watch(poller, events, args.batch_size),
                        status_line=status_line)  # fmt: skip
    settle = _settle(poller, args.settle_timeout, mode, quiet=args.no_progress)
    cpu = cpu_delta(cpu_before, cpu_snapshot(roots))
    cpu["bench (client, poller)"] = own_cpu() - own_before
    with psycopg.connect(dsn, autocommit=True) as conn:
        poller.backends.sample(conn)
    cpu[OUR_POSTGRES] = poller.backends.seconds()
    poller.halt.set()
    poller.join(timeout=10)
    time.sleep(1.0)  # the cluster saves its last results
    stops = {"qcluster": stop_process(cluster), "gunicorn": stop_process(server)}
    run.procs = [p for p in run.procs if p not in (cluster, server)]
    flush_broker(args.redis)
    out = analyse(args, mode, events, sent, poller, cpu, dsn)
    out.update(settle=settle, stop_seconds=stops, cluster_log=_log_summary(run.tmp / f"{mode}-qcluster.log"))
    drop_database(args.database_url)
    return out


def _watch(poller: Poller, events: list[BenchEvent], size: int) -> Callable[[int, Sent], None]:
    """The answer callback: every event of a batch answered 202 is watched from its answer on (the others
    are counted, not watched)."""

    def on_answer(i: int, batch: Sent) -> None:
        if batch.status == "202":
            for event in events[i * size : (i + 1) * size]:
                poller.expect(event.msg_id, event.workspace_id, batch.answered)

    return on_answer


def _settle(poller: Poller, limit: float, label: str, *, quiet: bool) -> dict[str, Any]:
    """Wait until every watched event is rolled up (and, with profiles, reflected) or `limit` s pass."""
    t0 = last = time.monotonic()
    while poller.waiting() and time.monotonic() - t0 < limit:
        time.sleep(0.1)
        if poller.error is not None:
            raise RuntimeError(f"the poller failed: {poller.error!r}")
        if not quiet and time.monotonic() - last >= 5:
            last = time.monotonic()
            say(f"{label}: settling: {poller.waiting():,} events not yet reflected ({last - t0:.0f} s)")
    return {"seconds": round(time.monotonic() - t0, 2), "not_seen": poller.waiting()}


def analyse(args: argparse.Namespace, mode: str, events: list[BenchEvent], sent: list[Sent], poller: Poller,
            cpu: dict[str, float], dsn: str) -> dict[str, Any]:  # fmt: skip
    """Latencies, achieved rate, CPU per event, and the check that every touched profile was re-evaluated."""
    watched = list(poller.events.values())
    answered = [s for s in sent if s.status == "202"]
    span = (max(s.answered for s in answered) - min(s.sent for s in answered)) if answered else 0.0
    rolled = [w.rolled_up - w.answered for w in watched if w.rolled_up is not None]
    fresh = [w.fresh - w.answered for w in watched if w.fresh is not None]
    processing = sum(cpu.get(name, 0.0) for name in ("qcluster", OUR_POSTGRES, "redis"))
    accepted = len(watched)
    out: dict[str, Any] = {
        "events_sent": len(events),
        "batches": {
            "sent": len(sent),
            "answers": dict(Counter(s.status for s in sent)),
            "answer_ms": stats_ms([s.answered - s.sent for s in answered]),
            "late_start_ms": stats_ms([max(0.0, s.sent - s.due) for s in sent]),
        },
        "events_accepted": accepted,
        "accepted_per_second": round(accepted / span, 1) if span else None,
        "rolled_up_ms": stats_ms(rolled),
        "freshness_ms": stats_ms(fresh) if mode == "on" else {},
        "not_seen": sum((w.fresh if mode == "on" else w.rolled_up) is None for w in watched),
        "poller": {"polls": poller.polls, "mean_poll_ms": round(1000 * poller.poll_seconds / max(1, poller.polls), 1)},
        "cpu_seconds": {k: round(v, 2) for k, v in cpu.items() if not k.endswith("_sys")},
        "cpu_ms_per_event": {
            "machine": round(1000 * cpu["machine"] / max(1, accepted), 3),
            "gunicorn": round(1000 * cpu.get("gunicorn", 0.0) / max(1, accepted), 3),
            PROCESSING: round(1000 * processing / max(1, accepted), 3),
            "qcluster": round(1000 * cpu.get("qcluster", 0.0) / max(1, accepted), 3),
            OUR_POSTGRES: round(1000 * cpu.get(OUR_POSTGRES, 0.0) / max(1, accepted), 3),
            "postgres (every database on the server)": round(1000 * cpu.get("postgres", 0.0) / max(1, accepted), 3),
        },
        "machine_busy_pct": round(cpu["machine_busy_pct"], 1),
    }
    with psycopg.connect(dsn, autocommit=True) as conn:
        out["events_by_status"] = dict(conn.execute(
            "SELECT status, count(*) FROM events_event WHERE type = 'usage.recorded' GROUP BY 1"))  # fmt: skip
        out["rollup_tasks"] = conn.execute(
            "SELECT count(*) FROM django_q_task WHERE func = 'usage.tasks.rollup_usage'"
        ).fetchone()[0]
        if mode == "on":
            out["profiles_current"] = _profiles_current(conn, events, sent, args.batch_size)
            out["history_rows"] = {table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
                                   for table in ("usage_cohortmembership", "usage_stageperiod")}  # fmt: skip
    return out


def _profiles_current(conn: psycopg.Connection, events: list[BenchEvent], sent: list[Sent], size: int) -> dict:
    """Every workspace sent to has a profile evaluated after its last batch was sent (the end state is right)."""
    last_sent: dict[str, datetime] = {}
    for i, batch in enumerate(sent):
        if batch.status == "202" and batch.sent_wall is not None:
            for event in events[i * size : (i + 1) * size]:
                last_sent[event.workspace_id] = batch.sent_wall
    evaluated = dict(conn.execute("SELECT workspace_key, evaluated_at FROM usage_profile WHERE workspace_key = ANY(%s)",
                                  [list(last_sent)]))  # fmt: skip
    stale = sorted(ws for ws, at in last_sent.items() if ws not in evaluated or evaluated[ws] < at)
    return {"workspaces": len(last_sent), "stale": len(stale), "stale_samples": stale[:5]}


def _log_summary(path: Path) -> dict[str, Any]:
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    errors = [line for line in lines if log_level(line) in ("ERROR", "CRITICAL")]
    return {"errors": len(errors), "error_samples": [line[:1000] for line in errors[:3]]}


def benchmark(run: Run) -> dict[str, Any]:
    args = run.args
    report: dict[str, Any] = start_conditions(args.wait_others, pattern=OTHER_BENCHMARKS)
    report["postgres"] = server_info(args.database_url.rsplit("/", 1)[0] + "/postgres")
    report["template"] = prepare_template(run)
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in args.modes}
    for n in range(args.pairs):  # on off, off on, on off …: neither mode always runs on a warmer machine
        for mode in args.modes if n % 2 == 0 else args.modes[::-1]:
            r = run_mode(run, mode)
            runs[mode].append(r)
            say(
                f"{mode} (run {n + 1} of {args.pairs}): {r['accepted_per_second']} events/s accepted; rolled up p99 "
                f"{r['rolled_up_ms'].get('p99')} ms"
                + (f", profile p99 {r['freshness_ms'].get('p99')} ms" if mode == "on" else "")
                + f"; processing CPU {r['cpu_ms_per_event'][PROCESSING]} ms/event"
            )
    for mode, done in runs.items():
        # the run with the worst freshness stands for the mode; every run's CPU counts for the ratio
        report[mode] = max(done, key=lambda r: r["freshness_ms"].get("p99") or r["rolled_up_ms"].get("p99") or 0)
    if "on" in runs and "off" in runs:
        cpu = {mode: [r["cpu_ms_per_event"][PROCESSING] for r in runs[mode]] for mode in ("on", "off")}
        on, off = sum(cpu["on"]) / len(cpu["on"]), sum(cpu["off"]) / len(cpu["off"])
        report["processing_cost_ratio_off_to_on"] = round(off / on, 3) if on else None
        report["processing_cpu_ms_per_event_runs"] = cpu
        pairs = zip(cpu["on"], cpu["off"], strict=True)
        report["processing_cost_ratio_each_pair"] = [round(off_run / on_run, 3) for on_run, off_run in pairs]
    report["machine_after"] = machine_info()
    return report


def judge(report: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    targets: dict[str, Any] = {}
    if on := report.get("on"):
        p99 = on["freshness_ms"].get("p99")
        targets["usage_freshness_p99_ms"] = {"target": f"<= {TARGET_P99_MS:.0f}", "value": p99,
                                             "pass": p99 is not None and p99 <= TARGET_P99_MS}  # fmt: skip
        rate = on["accepted_per_second"] or 0
        targets["usage_rate_sustained"] = {"target": f">= {0.95 * args.rate:.0f} events/s", "value": rate,
                                           "pass": rate >= 0.95 * args.rate}  # fmt: skip
        targets["usage_all_reflected"] = {
            "target": "every event accepted and reflected; every touched profile evaluated after its last batch",
            "value": {
                "accepted": on["events_accepted"],
                "sent": on["events_sent"],
                "not_seen": on["not_seen"],
                "stale_profiles": on["profiles_current"]["stale"],
            },
            "pass": on["events_accepted"] == on["events_sent"]
            and on["not_seen"] == 0
            and on["profiles_current"]["stale"] == 0,
        }
    if (ratio := report.get("processing_cost_ratio_off_to_on")) is not None:
        targets["usage_processing_cost_ratio"] = {"target": f">= {MIN_COST_RATIO} (CPU per event off ÷ on, mean of "
                                                            f"{args.pairs} run(s) a mode)",
                                                  "value": ratio, "pass": ratio >= MIN_COST_RATIO}  # fmt: skip
    return targets


def print_summary(report: dict[str, Any], targets: dict[str, Any]) -> None:
    print(f"\nusage freshness: {report['template']['data']['rows']['workspaces']:,} workspaces with history")
    for mode in MODES:
        if r := report.get(mode):
            print(f"  profiles {mode}: {r['accepted_per_second']} events/s; rolled up {r['rolled_up_ms']}")
            if r["freshness_ms"]:
                print(f"    accepted → profile {r['freshness_ms']}")
            print(f"    CPU ms/event {r['cpu_ms_per_event']} (machine {r['machine_busy_pct']} % busy)")
    scaffold.print_targets(targets)


def live_load_arguments(parser: argparse.ArgumentParser) -> None:
    """The live load's options (the sender, the poller, the servers), shared with trigger_latency.py."""
    parser.add_argument("--rate", type=float, default=500.0, help="usage events per second (open loop)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to send")
    parser.add_argument("--batch-size", type=int, default=100, help="events per signed batch")
    parser.add_argument("--poll-ms", type=float, default=50.0, help="how often the poller looks")
    parser.add_argument("--settle-timeout", type=float, default=300.0, help="after sending, wait at most this long")
    parser.add_argument("--gunicorn-workers", type=int, default=2)
    parser.add_argument("--gunicorn-threads", type=int, default=4)
    parser.add_argument("--q-workers", type=int, default=2, help="Q_WORKERS of the cluster")
    parser.add_argument("--client-threads", type=int, default=4, help="sender threads (connections)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = scaffold.parser("usage_freshness", __doc__, "Accepted → profile p99; CPU per event profiles off ÷ on.",
                             template=True, redis=scaffold.REDIS_PHASE)  # fmt: skip
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="BEHAVIOUR_PROFILES runs")
    parser.add_argument("--workspaces", type=int, default=2_000, help="workspaces with 90 days of history")
    parser.add_argument("--pairs", type=int, default=3,
                        help="run the modes this many times each, alternating their order; the cost ratio is over "
                             "the mean CPU of all runs (one run's ratio moves with a shared machine), the "
                             "freshness target is judged on the worst run")  # fmt: skip
    live_load_arguments(parser)
    scaffold.common_arguments(
        parser,
        "usage_freshness",
        database_url=DEFAULT_DATABASE_URL,
        redis=DEFAULT_REDIS,
        wait_others=scaffold.wait_others_help(OTHER_BENCHMARKS),
        quick="15 s per mode over 1,000 workspaces",
        keep_logs="keep the gunicorn and qcluster logs",
        children=("sweep",),
    )
    return scaffold.parse(parser, argv, quick={"seconds": 15.0, "workspaces": 1_000, "pairs": 1})


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return scaffold.run_benchmark("usage_freshness", args, argv, Run, benchmark, lambda r: judge(r, args),
                                  print_summary, child_main)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
