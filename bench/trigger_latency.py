#!/usr/bin/env python
"""Trigger latency: a usage event accepted → its trigger's action delivery enqueued (its dispatch row committed),
p99 ≤ 1 s at 500 events/s sustained with 50 triggers defined (issue 23).

A real gunicorn (config.wsgi, gthread) and a real `manage.py qcluster` (Redis broker) on PostgreSQL take
`usage.recorded` events in signed batches (`POST /webhooks/provisioning/batch/`) at a steady --rate for --seconds,
open loop, exactly as bench/usage_freshness.py sends them (its generator, sender and accounting), uniformly
over --workspaces workspaces that have 90 days of rollups and an evaluated profile (bench/behaviour.py's
generator, then one sweep). Fifty triggers are enabled, a realistic mix of every kind that reads usage:
the first use of a feature (10, once per workspace), a feature "used today" (10, once a day), 3 failed
uses of a feature within an hour (10), 8 cohort entries and exits, 5 stage changes, 4 stalls (a flow
started and not finished within 48 h) and 3 silences (7, 14, 30 days), each with an email or in-app action,
under the default caps (3 a day per workspace and per person) and quiet hours.

Before the measured run, --warm-seconds of the same load (not measured) and an ANALYZE: a running engine's
firing, timer and dispatch tables are not empty and have statistics (autovacuum analyzes them as they grow),
and the caps and once-only triggers have history; tables that grow from empty during the run get plans made
for empty tables (a cap count scanning every firing by its escalation index: 38 ms a decision).

The usage rollup decides the firings in its own transaction (triggers.tasks.usage_batch_evaluate) and plans
their dispatches there. A poller on its own connection (every --poll-ms) reads the dispatches committed since
its last look, each with the event its firing names (`event:<id>`, `count:<id>`: the event that made it fire):
latency = the poll that first saw the dispatch − the 202 of that event's batch. Cohort and stage firings, whose
cause is a batch's re-evaluation rather than one event, are counted, not timed. The stages of the time are
read afterwards from the rows: accepted → rolled up (`completed_at`) → decided (`decided_at`) → seen.
"""

from __future__ import annotations

import argparse
import base64
import secrets
import sys
import time
from collections import Counter
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
    migrate,
    recreate_database,
    run_child,
    server_info,
    start_conditions,
    start_qcluster,
    stop_process,
    template_url,
)
from ingest import sign_batches
from salesforce_sync import free_port, own_cpu, start_gunicorn, stats_ms
from scaffold import machine_info, say
from usage_freshness import (
    PollingThread,
    Sent,
    _log_summary,
    live_load_arguments,
    send_batches,
    usage_events,
)

SCRIPT = Path(__file__).resolve()
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/lifecycle_bench_trigger_latency"
DEFAULT_REDIS = "redis://127.0.0.1:6379/9"
OTHER_BENCHMARKS = (
    "bench/ingest.py|bench/salesforce_sync.py|bench/process.py|bench/behaviour.py|bench/usage_freshness.py"
)
TARGET_P99_MS = 1000.0
OUR_POSTGRES = "postgres (this database's backends)"
PROCESSING = "processing (qcluster + this database's backends + redis)"
EMAIL = [{"channel": "email", "template": "welcome"}]
IN_APP = [{"channel": "in_app", "template": "welcome"}]


# --- the 50 triggers -----------------------------------------------------------------------------------------


def feature_is(feature: str, **more: Any) -> dict[str, Any]:
    where = [{"path": "feature", "op": "==", "value": feature}]
    where += [{"path": key, "op": "==", "value": value} for key, value in more.items()]
    return {"type": "usage.recorded", "where": where}


def trigger_mix() -> list[dict[str, Any]]:
    """Fifty trigger documents (as a definitions file holds them), every kind that reads usage."""
    mix: list[dict[str, Any]] = []
    for n, (product, feature) in enumerate(FEATURES[1::2]):  # 10: the first use of a feature (once per workspace)
        mix.append({"key": f"first_{n}", "name": f"First {product} {feature}", "reentry": "once",
                    "when": {"kind": "event", "event": feature_is(feature)},
                    "actions": IN_APP if n % 2 else EMAIL})  # fmt: skip
    for n, (_, feature) in enumerate(FEATURES[::2]):  # 10: used today (once a day)
        mix.append({"key": f"today_{n}", "name": f"{feature} today", "cap_seconds": 86400,
                    "when": {"kind": "event", "event": feature_is(feature)}, "actions": EMAIL})  # fmt: skip
    for n, (_, feature) in enumerate(FEATURES[::2]):  # 10: three failures within an hour
        mix.append({"key": f"failing_{n}", "name": f"{feature} failing", "actions": EMAIL,
                    "when": {"kind": "count", "event": feature_is(feature, outcome="error"), "count": 3,
                             "within_seconds": 3600}})  # fmt: skip
    cohorts = ("feature_shallow_frequent", "plan_limited_power_user", "at_risk", "multi_product_candidate",
               "api_partnership_prospect")  # fmt: skip
    for cohort in cohorts:  # 5 + 3: cohorts entered and exited
        mix.append({"key": f"enter_{cohort}", "name": f"Entered {cohort}", "actions": EMAIL,
                    "when": {"kind": "cohort", "cohort": cohort, "change": "entered"}})  # fmt: skip
    for cohort in cohorts[:3]:
        mix.append({"key": f"exit_{cohort}", "name": f"Exited {cohort}", "actions": EMAIL,
                    "when": {"kind": "cohort", "cohort": cohort, "change": "exited"}})  # fmt: skip
    for stage in ("activated", "adopted", "expanding", "at_risk", "dormant"):  # 5: stages reached
        mix.append({"key": f"stage_{stage}", "name": f"Now {stage}", "actions": EMAIL,
                    "when": {"kind": "stage", "from": None, "to": stage}})  # fmt: skip
    for n in range(4):  # 4: a flow started and not finished within 48 h
        start, finish = FEATURES[9 + n][1], FEATURES[10 + n][1]
        mix.append({"key": f"stalled_{n}", "name": f"{start} stalled", "actions": EMAIL,
                    "when": {"kind": "stall", "start": feature_is(start), "finish": feature_is(finish),
                             "within_seconds": 48 * 3600}})  # fmt: skip
    for days in (7, 14, 30):  # 3: no activity for a week, two, a month
        mix.append({"key": f"silent_{days}", "name": f"Silent {days} days", "actions": EMAIL,
                    "when": {"kind": "silence", "for_seconds": days * 86400}})  # fmt: skip
    return mix


# --- the Django child: profiles and triggers -------------------------------------------------------------------


def child_main(args: argparse.Namespace) -> int:
    """Evaluate every workspace once (the steady state a live engine is in), then define the fifty triggers
    (the shipped ones stay as shipped: disabled until an admin turns them on)."""
    django_setup()
    from django.core.cache import cache

    from triggers.models import Trigger
    from triggers.services import trigger_save
    from usage.services import behaviour_sweep

    t0 = time.monotonic()
    result = behaviour_sweep()
    swept = time.monotonic() - t0
    Trigger.objects.update(enabled=False)  # what other work shipped enabled is not part of this measure
    for document in trigger_mix():
        trigger_save(trigger=Trigger(enabled=True, **document))
    cache.clear()
    kinds = Counter(trigger.when["kind"] for trigger in Trigger.objects.filter(enabled=True))
    emit({"result": {"visited": result.visited, "sweep_seconds": swept, "triggers": dict(kinds)}})
    return 0


# --- watching ---------------------------------------------------------------------------------------------------


class Poller(PollingThread):
    """Every `interval`: the dispatches committed since the last look, with what their firings name."""

    QUERY = (
        "SELECT d.id, f.id, f.occurrence, e.external_id FROM messaging_dispatch d"
        " JOIN triggers_firing f ON f.id = d.source_id AND d.source = 'firing'"
        " LEFT JOIN events_event e ON e.id = CASE WHEN f.occurrence ~ '^(event|count):[0-9]+$'"
        "   THEN split_part(f.occurrence, ':', 2)::bigint END"
        " WHERE d.id > %s ORDER BY d.id"
    )

    def __init__(self, dsn: str, interval: float) -> None:
        super().__init__(dsn, interval)
        self.seen: list[tuple[int, int, str, str | None, float]] = []  # dispatch, firing, occurrence, event, seen
        self.last = 0

    def poll(self, conn: psycopg.Connection) -> None:
        rows = conn.execute(self.QUERY, [self.last]).fetchall()
        seen = time.monotonic()
        with self.lock:
            self.seen += [(*row, seen) for row in rows]
        self.last = rows[-1][0] if rows else self.last

    def count(self) -> int:
        with self.lock:
            return len(self.seen)


# --- the run ------------------------------------------------------------------------------------------------------


class Run(LiveRun):
    prefix = "bench-trigger-latency-"


def prepare_template(run: Run) -> dict[str, Any]:
    args = run.args
    template = template_url(args.database_url)
    run.databases += [args.database_url, template]
    say(f"creating {db_name(template)}: {args.workspaces:,} workspaces with 90 days of usage, profiles, 50 triggers")
    recreate_database(template)
    migrate(django_env(template))
    out: dict[str, Any] = {"data": generate(libpq_dsn(template), args.workspaces, datetime.now(UTC).date().isoformat())}
    out["setup"] = run_child(SCRIPT, ["--child", "setup", "--database-url", template], django_env(template))
    with psycopg.connect(libpq_dsn(template), autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")
    say(f"template ready: {out['setup']['visited']:,} profiles, triggers {out['setup']['triggers']}")
    return out


def run_live(run: Run) -> dict[str, Any]:
    args = run.args
    clone_database(template_url(args.database_url), args.database_url)
    dsn = libpq_dsn(args.database_url)
    run.redis_used = True
    flush_broker(args.redis)
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    env = django_env(args.database_url, broker=args.redis, workers=args.q_workers, log_level="INFO")
    env.update({"PROVISIONING_WEBHOOK_SECRET": secret, "BEHAVIOUR_PROFILES": "1", "SALESFORCE_SYNC": "off"})
    port = free_port()
    server = start_gunicorn(args, env, port, run.tmp / "gunicorn.log")
    run.procs.append(server)
    cluster = start_qcluster(env, run.tmp / "qcluster.log")
    run.procs.append(cluster)
    roots = {**find_cpu_roots(server.pid), "qcluster": cluster.pid}

    warm = usage_events(round(args.rate * args.warm_seconds), workspaces=args.workspaces, seed=args.seed + 1,
                        prefix="warm")  # fmt: skip
    events = usage_events(round(args.rate * args.seconds), workspaces=args.workspaces, seed=args.seed, prefix="use")
    every = args.batch_size / args.rate
    say(f"warming up: {len(warm):,} events at {args.rate:.0f}/s, then ANALYZE")
    send_batches(port, sign_batches(warm, secret, args.batch_size), every=every, threads=args.client_threads,
                 label="warm-up", quiet=True, on_answer=lambda i, sent: None)  # fmt: skip
    _wait_rolled_up(dsn, args.settle_timeout)
    with psycopg.connect(dsn, autocommit=True) as conn:
        # A running engine's firing, timer and dispatch tables have statistics (autovacuum analyzes them as they
        # grow); these started empty a moment ago, and plans made for empty tables are not the steady state.
        conn.execute("ANALYZE")
    poller = Poller(dsn, args.poll_ms / 1000)
    with psycopg.connect(dsn, autocommit=True) as conn:
        start_id = conn.execute("SELECT coalesce(max(id), 0) FROM messaging_dispatch").fetchone()[0]
    poller.start()
    while poller.polls == 0:
        time.sleep(0.05)
    with poller.lock:
        poller.seen = [row for row in poller.seen if row[0] > start_id]
    cpu_before, own_before = cpu_snapshot(roots), own_cpu()
    poller.backends.start()
    say(f"sending {len(events):,} usage events at {args.rate:.0f}/s for {args.seconds:.0f} s "
        f"to gunicorn on 127.0.0.1:{port}, qcluster Q_WORKERS={args.q_workers} on {args.redis}")  # fmt: skip
    sent = send_batches(port, sign_batches(events, secret, args.batch_size), every=every, threads=args.client_threads,
                        label="sending", quiet=args.no_progress, on_answer=lambda i, s: None,
                        status_line=lambda: f"  dispatches {poller.count():,}")  # fmt: skip
    settle = _settle(dsn, poller, args.settle_timeout)
    cpu = cpu_delta(cpu_before, cpu_snapshot(roots))
    cpu["bench (client, poller)"] = own_cpu() - own_before
    with psycopg.connect(dsn, autocommit=True) as conn:
        poller.backends.sample(conn)
    cpu[OUR_POSTGRES] = poller.backends.seconds()
    poller.halt.set()
    poller.join(timeout=10)
    time.sleep(1.0)
    stops = {"qcluster": stop_process(cluster), "gunicorn": stop_process(server)}
    run.procs = []
    flush_broker(args.redis)
    out = analyse(args, events, sent, poller, cpu, dsn, start_id)
    out.update(settle=settle, stop_seconds=stops, cluster_log=_log_summary(run.tmp / "qcluster.log"))
    drop_database(args.database_url)
    return out


def _wait_rolled_up(dsn: str, limit: float) -> float:
    """Wait until no usage event is `new` (the warm-up rolled up); how long that took."""
    t0 = time.monotonic()
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() - t0 < limit:
            if not conn.execute("SELECT 1 FROM events_event WHERE status = 'new' LIMIT 1").fetchone():
                break
            time.sleep(0.2)
    return time.monotonic() - t0


def _settle(dsn: str, poller: Poller, limit: float) -> dict[str, Any]:
    """After sending: every event rolled up, then no new dispatch for two seconds (or `limit` s in all)."""
    t0 = time.monotonic()
    rolled = _wait_rolled_up(dsn, limit)
    count, quiet_since = poller.count(), time.monotonic()
    while time.monotonic() - t0 < limit and time.monotonic() - quiet_since < 2.0:
        if poller.error is not None:
            raise RuntimeError(f"the poller failed: {poller.error!r}")
        time.sleep(0.2)
        if poller.count() != count:
            count, quiet_since = poller.count(), time.monotonic()
    return {"seconds": round(time.monotonic() - t0, 2), "rolled_up_after_seconds": round(rolled, 2)}


def analyse(args: argparse.Namespace, events: list, sent: list[Sent], poller: Poller, cpu: dict[str, float],
            dsn: str, start_id: int) -> dict[str, Any]:  # fmt: skip
    answered: dict[str, Sent] = {}
    size = args.batch_size
    for i, batch in enumerate(sent):
        if batch.status == "202":
            for event in events[i * size : (i + 1) * size]:
                answered[event.msg_id] = batch
    latency, by_cause = [], Counter()
    timed: dict[int, float] = {}  # firing → latency of its first dispatch
    for _, firing, occurrence, external_id, seen in poller.seen:
        batch = answered.get(external_id) if external_id else None
        by_cause[occurrence.split(":", 1)[0] if batch or not external_id else "warm-up"] += 1
        if batch is not None and firing not in timed:
            timed[firing] = seen - batch.answered
            latency.append(timed[firing])
    with psycopg.connect(dsn, autocommit=True) as conn:
        stages = _stages(conn, answered, start_id)
        firings = dict(conn.execute(
            "SELECT status || coalesce(':' || nullif(reason, ''), ''), count(*) FROM triggers_firing f"
            " WHERE f.id > (SELECT coalesce(min(source_id), 0) - 1 FROM messaging_dispatch WHERE id > %s)"
            " GROUP BY 1", [start_id]))  # fmt: skip
        by_kind = dict(conn.execute(
            "SELECT t.when->>'kind', count(*) FROM messaging_dispatch d JOIN triggers_firing f ON f.id = d.source_id"
            " JOIN triggers_trigger t ON t.id = f.trigger_id WHERE d.id > %s GROUP BY 1", [start_id]))  # fmt: skip
        statuses = dict(conn.execute("SELECT status, count(*) FROM events_event WHERE type = 'usage.recorded'"
                                     " GROUP BY 1"))  # fmt: skip
        timers = dict(conn.execute("SELECT kind || ':' || status, count(*) FROM triggers_timer GROUP BY 1"))
    ok = [s for s in sent if s.status == "202"]
    span = (max(s.answered for s in ok) - min(s.sent for s in ok)) if ok else 0.0
    accepted = sum(1 for _ in answered)
    processing = sum(cpu.get(name, 0.0) for name in ("qcluster", OUR_POSTGRES, "redis"))
    return {
        "events_sent": len(events),
        "events_accepted": accepted,
        "accepted_per_second": round(accepted / span, 1) if span else None,
        "batches": {
            "answers": dict(Counter(s.status for s in sent)),
            "answer_ms": stats_ms([s.answered - s.sent for s in ok]),
        },
        "dispatches_seen": len(poller.seen),
        "dispatches_by_cause": dict(by_cause),
        "dispatches_by_trigger_kind": by_kind,
        "latency_ms": stats_ms(latency),
        "stages_ms": stages,
        "firings_by_outcome": firings,
        "events_by_status": statuses,
        "timers": timers,
        "cpu_seconds": {k: round(v, 2) for k, v in cpu.items() if not k.endswith("_sys")},
        "cpu_ms_per_event": {
            "machine": round(1000 * cpu["machine"] / max(1, accepted), 3),
            "gunicorn": round(1000 * cpu.get("gunicorn", 0.0) / max(1, accepted), 3),
            PROCESSING: round(1000 * processing / max(1, accepted), 3),
        },
        "machine_busy_pct": round(cpu["machine_busy_pct"], 1),
        "poller": {"polls": poller.polls},
    }


def _stages(conn: psycopg.Connection, answered: dict[str, Sent], start_id: int) -> dict[str, Any]:
    """accepted → rolled up → decided → dispatch created, from the rows (wall clock: the answer's, the engine's)."""
    rows = conn.execute(
        "SELECT e.external_id, e.completed_at, f.decided_at, d.created_at FROM messaging_dispatch d"
        " JOIN triggers_firing f ON f.id = d.source_id"
        " JOIN events_event e ON e.id = split_part(f.occurrence, ':', 2)::bigint"
        " WHERE d.id > %s AND f.occurrence ~ '^(event|count):[0-9]+$'", [start_id]).fetchall()  # fmt: skip
    rolled, decided, created = [], [], []
    for external_id, completed_at, decided_at, created_at in rows:
        batch = answered.get(external_id)
        if batch is None or batch.sent_wall is None or completed_at is None:
            continue
        answered_wall = batch.sent_wall.timestamp() + (batch.answered - batch.sent)
        rolled.append(completed_at.timestamp() - answered_wall)
        decided.append(decided_at.timestamp() - answered_wall)
        created.append(created_at.timestamp() - answered_wall)
    return {"rolled_up": stats_ms(rolled), "decided": stats_ms(decided), "dispatch_created": stats_ms(created)}


def benchmark(run: Run) -> dict[str, Any]:
    args = run.args
    report: dict[str, Any] = start_conditions(args.wait_others, pattern=OTHER_BENCHMARKS)
    report["postgres"] = server_info(args.database_url.rsplit("/", 1)[0] + "/postgres")
    report["template"] = prepare_template(run)
    report["live"] = run_live(run)
    r = report["live"]
    say(f"{r['accepted_per_second']} events/s accepted; {r['dispatches_seen']:,} dispatches; latency {r['latency_ms']}")
    report["machine_after"] = machine_info()
    return report


def judge(report: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    live = report["live"]
    p99 = live["latency_ms"].get("p99")
    rate = live["accepted_per_second"] or 0
    timed = live["latency_ms"].get("n", 0)
    return {
        "trigger_latency_p99_ms": {
            "target": f"<= {TARGET_P99_MS:.0f} (usage event accepted → its dispatch committed; {timed:,} timed)",
            "value": p99,
            "pass": p99 is not None and p99 <= TARGET_P99_MS,
        },
        "trigger_rate_sustained": {
            "target": f">= {0.95 * args.rate:.0f} events/s",
            "value": rate,
            "pass": rate >= 0.95 * args.rate,
        },
        "trigger_all_accepted_and_rolled_up": {
            "target": "every event accepted and rolled up; 50 triggers enabled; dispatches planned",
            "value": {
                "accepted": live["events_accepted"],
                "sent": live["events_sent"],
                "by_status": live["events_by_status"],
                "triggers": report["template"]["setup"]["triggers"],
                "dispatches": live["dispatches_seen"],
            },
            "pass": live["events_accepted"] == live["events_sent"]
            and set(live["events_by_status"]) == {"completed"}
            and sum(report["template"]["setup"]["triggers"].values()) == 50
            and timed > 0,
        },
    }


def print_summary(report: dict[str, Any], targets: dict[str, Any]) -> None:
    r = report["live"]
    print(f"\ntrigger latency: {r['accepted_per_second']} events/s; {r['dispatches_seen']:,} dispatches "
          f"{r['dispatches_by_cause']}")  # fmt: skip
    print(f"  accepted → dispatch seen {r['latency_ms']}")
    for name, value in r["stages_ms"].items():
        print(f"  accepted → {name}: {value}")
    print(f"  firings {r['firings_by_outcome']}")
    print(f"  CPU ms/event {r['cpu_ms_per_event']} (machine {r['machine_busy_pct']} % busy)")
    scaffold.print_targets(targets)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = scaffold.parser("trigger_latency", __doc__, "Accepted → dispatch p99 with 50 triggers.", template=True,
                             redis=scaffold.REDIS_PHASE)  # fmt: skip
    parser.add_argument("--workspaces", type=int, default=5_000, help="workspaces with 90 days of history")
    live_load_arguments(parser)
    parser.add_argument("--warm-seconds", type=float, default=10.0,
                        help="send this long at --rate first (not measured), then ANALYZE: the firing, timer and "
                             "dispatch tables of a running engine are not empty")  # fmt: skip
    scaffold.common_arguments(
        parser,
        "trigger_latency",
        database_url=DEFAULT_DATABASE_URL,
        redis=DEFAULT_REDIS,
        wait_others=scaffold.wait_others_help(OTHER_BENCHMARKS),
        quick="15 s over 2,000 workspaces",
        keep_logs="keep the gunicorn and qcluster logs",
        children=("setup",),
    )
    return scaffold.parse(parser, argv, quick={"seconds": 15.0, "workspaces": 2_000, "warm_seconds": 4.0})


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return scaffold.run_benchmark("trigger_latency", args, argv, Run, benchmark, lambda r: judge(r, args),
                                  print_summary, child_main)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
