#!/usr/bin/env python
"""Behaviour benchmark: the bulk pass over every workspace's rollups, and what the profile costs processing.

Two phases, each in its own database:

- bulk — `--workspaces` workspaces with 90 days of usage rollups generated in PostgreSQL (a share of active
  days per workspace, several features of four products, users, support tickets, plan-limit hits). The
  baseline is a plain aggregate of the same rollups (one GROUP BY workspace per rollup table: sums and
  counts, no windows, no DISTINCT). The engine's pass is `usage.services.behaviour_sweep` in a child
  process: every workspace's metrics, cohorts and stage, and the writes (profiles, memberships, stage
  periods) — first over workspaces never evaluated (every row new), then a day later (the daily pass: every
  profile whose windows hold rows is due, about three quarters of them). Targets: each pass ≤ 30 s at
  100,000 workspaces and ≤ 3× the plain aggregate; memory flat (RSS after the last workspace within 15 % of
  RSS after the first 10 %). CPU is the process's (all
  its threads), its own PostgreSQL backend's and that of the backend the sweep reads ahead on.
- processing — a backlog of lifecycle events and of usage events over the same workspaces, drained in a
  child process (`processing.tasks.process_workspaces`, then `usage.rollups.usage_rollup_batch`) with
  BEHAVIOUR_PROFILES on and off, each on a fresh clone, `--pairs` times (which mode goes first alternates).
  CPU per event (the process's own and its PostgreSQL backend's) of every off run ÷ that of every on run ≥ 0.7
  for each kind; a single pair on this shared machine read from 0.70 to 0.82 for the same code.

Figures go to bench/results/behaviour.json. See bench/README.md.
"""

# ruff: noqa: S608  (the data generator's SQL is built from constants and integers, never from input)
from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import scaffold
from common import (
    clone_database,
    copy_events,
    cpu_delta,
    cpu_snapshot,
    db_name,
    django_env,
    django_setup,
    drop_database,
    emit,
    find_cpu_roots,
    libpq_dsn,
    lifecycle_rows,
    migrate,
    proc_status,
    recreate_database,
    run_child,
    server_info,
    start_conditions,
    template_url,
)
from scaffold import Progress, machine_info, say

SCRIPT = Path(__file__).resolve()
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/lifecycle_bench_behaviour"
DAYS = 90
MAX_SECONDS = 30.0  # the bulk pass over 100,000 workspaces (issue 22 §5)
MAX_RATIO = 3.0  # ÷ the plain aggregate of the same rollups
MIN_COST_RATIO = 0.7  # CPU per event off ÷ on
FLAT = 0.15  # RSS at the end within 15 % of RSS after the first tenth
FEATURES = (
    ("esign", "send"), ("esign", "sign"), ("esign", "template"), ("esign", "bulk_send"), ("esign", "audit"),
    ("admin", "users"), ("admin", "roles"), ("admin", "sso"), ("admin", "billing"),
    ("api", "envelopes.create"), ("api", "envelopes.status"), ("api", "webhooks"),
    ("api", "integration.salesforce"), ("api", "integration.hubspot"), ("api", "integration.slack"),
    ("sdk", "embed"), ("sdk", "mobile"), ("sdk", "react"), ("sdk", "ios"), ("sdk", "android"),
)  # fmt: skip
ZONES = ("UTC", "UTC", "UTC", "UTC", "UTC", "UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo", "")


# --- data: generated in PostgreSQL ------------------------------------------------------------------------

# h(a, b): a deterministic number 0..999 from two integers (no random(): the same data every run).
H = "(abs(hashtext({a} || ':' || {b})) % 1000)"


def h(a: str, b: str) -> str:
    return H.format(a=a, b=b)


def generate(dsn: str, workspaces: int, today: str) -> dict[str, Any]:
    """Workspaces and their rollups, with INSERT … SELECT over generate_series (seconds per million rows).

    Per workspace (i): 10 % never used the product, 15 % stopped 40+ days ago, the rest are active on a
    share of days from 5 % to 95 %; each uses a contiguous run of 1-8 of the 20 features (so one to four
    products), each on about half of its active days; 1-8 seats, 1-3 of them per feature and day; 10 %
    with support tickets, 10 % with plan-limit hits.
    """
    features = ", ".join(f"({n}, '{p}', '{f}')" for n, (p, f) in enumerate(FEATURES))
    zones = ", ".join(f"({n}, '{z}')" for n, z in enumerate(ZONES))
    statements = {
        "workspaces": f"""
            INSERT INTO workspaces_workspace (workspace_id, name, status, email, first_name, last_name, company,
                plan, mrr, currency, subscription_id, billing_interval, trial_started_at, churn_reason,
                trial_history, needs_review, review_reasons, linked_by_admin, created_at, updated_at,
                salesforce_id, salesforce_state, at_risk, owner_why, acquisition_channel, campaign, timezone)
            SELECT 'ws_' || lpad(i::text, 7, '0'), 'Workspace ' || i,
                CASE WHEN i % 10 < 6 THEN 'paid' WHEN i % 10 < 8 THEN 'trial' ELSE 'churned' END,
                'owner' || i || '@customer' || (i % 997) || '.example.com', 'Dana', 'Lee', 'Customer ' || (i % 997),
                CASE WHEN i % 10 < 6 THEN 'team' ELSE 'trial' END, CASE WHEN i % 10 < 6 THEN 297 END, 'USD', '',
                '', TIMESTAMPTZ '{today}' - ((20 + i % 300) || ' days')::interval, '', '[]', false, '[]', false,
                now(), now(), '', '', false, '', '', '', z.name
            FROM generate_series(0, {workspaces - 1}) i
            JOIN (VALUES {zones}) z (n, name) ON z.n = i % {len(ZONES)}""",
        "usage_days": f"""
            CREATE TEMP TABLE active AS
            SELECT i, d, DATE '{today}' - d AS day
            FROM generate_series(0, {workspaces - 1}) i CROSS JOIN generate_series(0, {DAYS - 1}) d
            WHERE {h("i", "7")} >= 100
              AND ({h("i", "8")} >= 150 OR d >= 40)
              AND {h("i", "'d' || d")} < 50 + ({h("i", "9")} * 9) / 10""",
        "usage_daily": f"""
            INSERT INTO triggers_usagedaily (workspace_key, feature, product, day, events, count, duration_seconds,
                errors, first_seen_at, last_seen_at)
            SELECT 'ws_' || lpad(a.i::text, 7, '0'), f.feature, f.product, a.day,
                1 + {h("a.i", "a.d * 20 + f.n")} % 40, 1 + {h("a.i", "a.d * 20 + f.n")} % 60,
                ({h("a.i", "a.d * 20 + f.n + 1")} * 3.7)::float,
                CASE WHEN {h("a.i", "a.d * 20 + f.n + 2")} < 30 THEN 1 ELSE 0 END,
                a.day + TIME '08:00', a.day + TIME '08:00' + ({h("a.i", "a.d")} * 50 || ' seconds')::interval
            FROM active a
            JOIN (VALUES {features}) f (n, product, feature)
              ON (f.n - {h("a.i", "11")} % 20 + 20) % 20 < 1 + {h("a.i", "12")} % 8
            WHERE {h("a.i", "a.d * 20 + f.n + 3")} < 500 OR f.n = {h("a.i", "11")} % 20""",
        "usage_users": f"""
            INSERT INTO triggers_usagedailyuser (workspace_key, feature, product, day, user_email)
            SELECT u.workspace_key, u.feature, u.product, u.day,
                'user' || ((hash + k) % seats) || '.' || substr(u.workspace_key, 4) || '@customer.example.com'
            FROM (SELECT *, {h("workspace_key", "day::text || feature")} AS hash,
                         1 + {h("workspace_key", "'seats'")} % 8 AS seats FROM triggers_usagedaily) u
            CROSS JOIN generate_series(0, 2) k
            WHERE k < 1 + u.hash % LEAST(u.seats, 3)""",
        "tickets": f"""
            INSERT INTO usage_supportticket (workspace_key, ticket_id, priority, opened_at, resolved_at, satisfaction)
            SELECT 'ws_' || lpad(i::text, 7, '0'), 't' || t, 'normal',
                TIMESTAMPTZ '{today}' - ({h("i", "t + 100")} % 74 || ' days')::interval,
                CASE WHEN {h("i", "t + 200")} < 500 THEN TIMESTAMPTZ '{today}' - interval '12 hours' END, NULL
            FROM generate_series(0, {workspaces - 1}) i CROSS JOIN generate_series(0, 3) t
            WHERE {h("i", "13")} < 100 AND t <= {h("i", "14")} % 4""",
        "plan_limits": f"""
            INSERT INTO usage_planlimitdaily (workspace_key, "limit", day, hits, last_hit_at)
            SELECT 'ws_' || lpad(i::text, 7, '0'), 'seats', DATE '{today}' - d, 1 + {h("i", "d + 300")} % 3,
                DATE '{today}' - d + TIME '12:00'
            FROM generate_series(0, {workspaces - 1}) i CROSS JOIN generate_series(0, 29) d
            WHERE {h("i", "15")} < 100 AND {h("i", "d + 400")} < 150""",
    }
    rows: dict[str, int] = {}
    t0 = time.monotonic()
    with psycopg.connect(dsn, autocommit=True) as conn:
        for name, statement in statements.items():
            started = time.monotonic()
            rows[name] = conn.execute(statement).rowcount
            say(f"generated {name}: {rows[name]:,} rows in {time.monotonic() - started:.1f} s")
        for table in ("workspaces_workspace", "triggers_usagedaily", "triggers_usagedailyuser",
                      "usage_supportticket", "usage_planlimitdaily"):  # fmt: skip
            conn.execute(f"VACUUM (ANALYZE) {table}")
        size = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))").fetchone()[0]
    rows.pop("usage_days")
    return {"rows": rows, "database_size": size, "generate_seconds": round(time.monotonic() - t0, 1)}


def reuse(dsn: str, workspaces: int, today: str) -> dict[str, Any]:
    """The data of an earlier run kept with --keep-database, generated today for as many workspaces, with
    the behaviour state emptied (the first pass then finds every workspace new, as on generated data)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        found = conn.execute("SELECT count(*), max(day) FROM workspaces_workspace, "
                             "(SELECT max(day) AS day FROM usage_planlimitdaily) d").fetchone()  # fmt: skip
        if found[0] != workspaces or str(found[1]) != today:
            raise SystemExit(f"--reuse-database: the kept database has {found[0]:,} workspaces with rollups up to "
                             f"{found[1]}, not {workspaces:,} up to {today}")  # fmt: skip
        conn.execute("TRUNCATE usage_cohortmembership, usage_stageperiod, usage_profile")
        rows = {
            name: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for name, table in (("workspaces", "workspaces_workspace"), ("usage_daily", "triggers_usagedaily"),
                                ("usage_users", "triggers_usagedailyuser"), ("tickets", "usage_supportticket"),
                                ("plan_limits", "usage_planlimitdaily"))
        }  # fmt: skip
        size = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))").fetchone()[0]
    say(f"reusing the kept data: {rows}")
    return {"rows": rows, "database_size": size, "reused": True}


PLAIN = {
    "usage_daily": "SELECT workspace_key, count(*), sum(events), sum(count), sum(duration_seconds), sum(errors), "
    "max(day), max(last_seen_at) FROM triggers_usagedaily GROUP BY workspace_key",
    "usage_users": "SELECT workspace_key, count(*), max(day) FROM triggers_usagedailyuser GROUP BY workspace_key",
    "tickets": "SELECT workspace_key, count(*), max(opened_at) FROM usage_supportticket GROUP BY workspace_key",
    "plan_limits": "SELECT workspace_key, sum(hits) FROM usage_planlimitdaily GROUP BY workspace_key",
}


def plain_aggregate(dsn: str, runs: int = 2) -> dict[str, Any]:
    """The baseline: one GROUP BY workspace per rollup table, every result row fetched; best of `runs`
    after a warm-up (the engine's pass, after it, finds the same pages cached)."""
    best: dict[str, float] = {}
    groups: dict[str, int] = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        for run in range(runs + 1):
            for name, statement in PLAIN.items():
                started = time.monotonic()
                groups[name] = len(conn.execute(statement).fetchall())
                seconds = time.monotonic() - started
                if run:
                    best[name] = min(best.get(name, seconds), seconds)
    return {"seconds": round(sum(best.values()), 3), "per_table_seconds": best, "groups": groups}


# --- the child processes (Django) ------------------------------------------------------------------------


def child_sweep(args: argparse.Namespace) -> int:
    """One behaviour_sweep at `--at`, RSS noted after every chunk."""
    django_setup()
    from django.db import connection

    from usage.services import SWEEP_CHUNK, behaviour_sweep

    now = datetime.fromisoformat(args.at)
    rss: list[tuple[int, float]] = []
    chunks = 0
    others: dict[int, float] = {}  # the sweep's other backends (its read-ahead connection): CPU last seen

    def on_changes(changes: list) -> None:
        nonlocal chunks
        chunks += 1
        rss.append((chunks * SWEEP_CHUNK, round(proc_status().get("VmRSS", 0) / 1024, 1)))
        emit({"progress": min(chunks * SWEEP_CHUNK, args.workspaces)})
        with connection.cursor() as cursor:
            cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                           "AND backend_type = 'client backend' AND pid <> pg_backend_pid()")  # fmt: skip
            for (pid,) in cursor.fetchall():
                with contextlib.suppress(OSError):
                    others[pid] = _pid_cpu(pid)

    connection.ensure_connection()
    backend = connection.connection.info.backend_pid
    cpu0, backend0 = _own_cpu(), _pid_cpu(backend)
    t0 = time.monotonic()
    result = behaviour_sweep(now=now, on_changes=on_changes)
    seconds = time.monotonic() - t0
    cpu = {"process": _own_cpu() - cpu0, "postgres_backend": _pid_cpu(backend) - backend0,
           "postgres_read_ahead_backend": sum(others.values())}  # fmt: skip
    emit({"result": {"seconds": seconds, "visited": result.visited, "changed": result.changed, "cpu_seconds": cpu,
                     "rss_series_mb": rss, "peak_rss_mb": round(proc_status().get("VmHWM", 0) / 1024, 1)}})  # fmt: skip
    return 0


def child_process(args: argparse.Namespace) -> int:
    """Drain the lifecycle backlog, then the usage backlog, with BEHAVIOUR_PROFILES as the environment says."""
    django_setup()
    from django.conf import settings
    from django.db import connection

    from processing.tasks import process_workspaces
    from usage.rollups import DEFAULT_LIMIT, usage_rollup_batch

    connection.ensure_connection()
    backend = connection.connection.info.backend_pid
    keys = [f"ws_{i:07d}" for i in range(args.process_workspaces)]
    out: dict[str, Any] = {"behaviour_profiles": settings.BEHAVIOUR_PROFILES}
    cpu0, backend0, t0 = _own_cpu(), _pid_cpu(backend), time.monotonic()
    claimed = 0
    for start in range(0, len(keys), args.chunk):
        claimed += process_workspaces(keys[start : start + args.chunk])["claimed"]
    out["lifecycle"] = {"events": claimed, "seconds": time.monotonic() - t0, "process_cpu": _own_cpu() - cpu0,
                        "backend_cpu": _pid_cpu(backend) - backend0}  # fmt: skip
    cpu0, backend0, t0 = _own_cpu(), _pid_cpu(backend), time.monotonic()
    rolled = batches = 0
    limit = args.batch or DEFAULT_LIMIT
    out["rollup_batch_limit"] = limit
    while (batch := usage_rollup_batch(limit=limit)).claimed:
        rolled += batch.rolled_up
        batches += 1
    out["usage"] = {"events": rolled, "batches": batches, "seconds": time.monotonic() - t0,
                    "process_cpu": _own_cpu() - cpu0, "backend_cpu": _pid_cpu(backend) - backend0}  # fmt: skip
    emit({"result": out})
    return 0


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _pid_cpu(pid: int) -> float:
    """utime + stime of another process (our PostgreSQL backend), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_main(args: argparse.Namespace) -> int:
    return child_sweep(args) if args.child == "sweep" else child_process(args)


# --- the phases ---------------------------------------------------------------------------------------------


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.databases: list[str] = []

    def cleanup(self) -> None:
        if not self.args.keep_database:
            for url in self.databases:
                with contextlib.suppress(Exception):
                    drop_database(url)


def sweep(run: Run, at: datetime, label: str) -> dict[str, Any]:
    args = run.args
    progress = Progress(label, args.workspaces, quiet=args.no_progress, unit=" ws")
    with psycopg.connect(libpq_dsn(args.database_url), autocommit=True) as conn:
        due = conn.execute("SELECT count(*) FROM usage_profile WHERE next_due_at <= %s", [at]).fetchone()[0]
    roots = find_cpu_roots()
    before = cpu_snapshot(roots)
    child = ["--child", "sweep", "--at", at.isoformat(), "--workspaces", str(args.workspaces),
             "--database-url", args.database_url]  # fmt: skip
    result = run_child(SCRIPT, child, django_env(args.database_url), on_line=lambda m: progress.show(m["progress"]))
    progress.show(args.workspaces, final=True)
    cpu = cpu_delta(before, cpu_snapshot(roots))
    series = result["rss_series_mb"]
    tenth = next((mb for done, mb in series if done >= args.workspaces / 10), series[0][1] if series else 0)
    last = series[-1][1] if series else 0
    with psycopg.connect(libpq_dsn(args.database_url), autocommit=True) as conn:
        counts = {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("usage_profile", "usage_cohortmembership", "usage_stageperiod")
        }
        stages = dict(conn.execute("SELECT s.key, count(*) FROM usage_profile p JOIN usage_stage s "
                                   "ON s.id = p.stage_id GROUP BY 1 ORDER BY 1").fetchall())  # fmt: skip
    return {
        "at": at.isoformat(),
        "seconds": round(result["seconds"], 3),
        "workspaces_per_second": round(result["visited"] / result["seconds"], 1) if result["seconds"] else None,
        "visited": result["visited"],
        "due_before": due,
        "changed": result["changed"],
        "cpu_seconds": {k: round(v, 2) for k, v in result["cpu_seconds"].items()},
        "machine_busy_pct": round(cpu["machine_busy_pct"], 1),
        "rss_mb": {"after_first_tenth": tenth, "at_end": last, "peak": result["peak_rss_mb"]},
        "rss_growth": round(last / tenth - 1, 3) if tenth else None,
        "rss_series_mb": series[:: max(1, len(series) // 20)] + series[-1:],
        "rows_after": counts,
        "stages_after": stages,
    }


def bulk(run: Run) -> dict[str, Any]:
    args = run.args
    run.databases.append(args.database_url)
    dsn = libpq_dsn(args.database_url)
    today = datetime.now(UTC).date()
    out: dict[str, Any] = {}
    if args.reuse_database:
        migrate(django_env(args.database_url))  # the code measured may bring migrations (an index) the data lacks
        out["data"] = reuse(dsn, args.workspaces, today.isoformat())
    else:
        say(f"creating {db_name(args.database_url)}, migrating it")
        recreate_database(args.database_url)
        migrate(django_env(args.database_url))
        say(f"generating {args.workspaces:,} workspaces × {DAYS} days of rollups")
        out["data"] = generate(dsn, args.workspaces, today.isoformat())
    say("plain aggregate (the baseline)")
    out["plain_aggregate"] = plain_aggregate(dsn)
    say(f"plain aggregate: {out['plain_aggregate']['seconds']:.2f} s")
    first_at = datetime.now(UTC)
    out["first_pass"] = sweep(run, first_at, "first pass (all new)")
    say(f"first pass: {out['first_pass']['seconds']:.1f} s")
    next_day = datetime.combine(today + timedelta(days=1), datetime.min.time(), tzinfo=UTC) + timedelta(hours=14)
    out["daily_pass"] = sweep(run, next_day, "daily pass (the due)")
    say(f"daily pass: {out['daily_pass']['seconds']:.1f} s")
    if not args.keep_database:
        drop_database(args.database_url)
    return out


def usage_rows(workspaces: int, events: int, seed: int) -> list[tuple]:
    """usage.recorded events (new) over the last 30 days, for COPY into events_event."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    rows = []
    for n in range(events):
        ws = f"ws_{rng.randrange(workspaces):07d}"
        product, feature = rng.choice(FEATURES)
        at = now - timedelta(days=rng.uniform(0, 30))
        data = {"workspace_id": ws, "feature": feature, "product": product, "count": rng.randint(1, 5),
                "user_email": f"user{rng.randrange(5)}.{ws[3:]}@customer.example.com",
                "duration_seconds": round(rng.uniform(1, 600), 1),
                "outcome": "error" if rng.random() < 0.03 else "success"}  # fmt: skip
        body = {"type": "usage.recorded", "timestamp": at.isoformat().replace("+00:00", "Z"), "data": data}
        rows.append(("provisioning", f"use_{n:08d}", "usage.recorded", at, now, ws, json.dumps(body), "new", 0, "",
                     "", None))  # fmt: skip
    return rows


def processing(run: Run) -> dict[str, Any]:
    args = run.args
    url = args.database_url + "_process"
    template = template_url(url)
    run.databases += [url, template]
    say(f"creating {db_name(template)}, migrating it, loading the lifecycle and usage backlogs")
    recreate_database(template)
    migrate(django_env(template))
    dsn = libpq_dsn(template)
    lifecycle = copy_events(dsn, lifecycle_rows(events=args.lifecycle_events, workspaces=args.process_workspaces,
                            seed=args.seed, status="new"), total=args.lifecycle_events, label="lifecycle (COPY)",
                            quiet=args.no_progress)  # fmt: skip
    rows = usage_rows(args.process_workspaces, args.usage_events, args.seed)
    usage = copy_events(dsn, iter(rows), total=len(rows), label="usage (COPY)", quiet=args.no_progress)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) events_event")
        conn.execute("DELETE FROM django_q_schedule")  # nothing runs them here; keeps the clones identical
    out: dict[str, Any] = {"backlog": {"lifecycle_events": lifecycle, "usage_events": usage,
                                       "workspaces": args.process_workspaces}}  # fmt: skip
    runs: dict[str, list[dict[str, Any]]] = {"on": [], "off": []}
    for n in range(args.pairs):  # on off, off on, …: neither mode always runs on a warmer machine
        for mode in ("on", "off") if n % 2 == 0 else ("off", "on"):
            runs[mode].append(_process_run(args, template, url, mode))
    for mode in ("on", "off"):
        out[mode] = runs[mode][-1]
        out[f"{mode}_runs_cpu_ms_per_event"] = {
            kind: [run[kind]["cpu_ms_per_event"] for run in runs[mode]] for kind in ("lifecycle", "usage")
        }
    for kind in ("lifecycle", "usage"):
        on, off = (sum(out[f"{mode}_runs_cpu_ms_per_event"][kind]) for mode in ("on", "off"))
        out[f"{kind}_cost_ratio_off_to_on"] = round(off / on, 3) if on else None
        out[f"{kind}_cost_ratio_each_pair"] = [
            round(o / n, 3) if n else None
            for n, o in zip(out["on_runs_cpu_ms_per_event"][kind], out["off_runs_cpu_ms_per_event"][kind], strict=True)
        ]
    return out


def _process_run(args: argparse.Namespace, template: str, url: str, mode: str) -> dict[str, Any]:
    """One drain of the backlog on a fresh clone, BEHAVIOUR_PROFILES `mode`."""
    clone_database(template, url)
    env = {**django_env(url), "BEHAVIOUR_PROFILES": "1" if mode == "on" else "0", "SALESFORCE_SYNC": "off"}
    say(f"processing with BEHAVIOUR_PROFILES {mode}")
    child = ["--child", "process", "--process-workspaces", str(args.process_workspaces), "--chunk",
             str(args.chunk), "--database-url", url]  # fmt: skip
    child += ["--batch", str(args.batch)] if args.batch else []
    result = run_child(SCRIPT, child, env)
    with psycopg.connect(libpq_dsn(url), autocommit=True) as conn:
        result["profiles"] = conn.execute("SELECT count(*) FROM usage_profile").fetchone()[0]
        result["events_by_status"] = dict(conn.execute("SELECT status, count(*) FROM events_event GROUP BY 1"))
    for kind in ("lifecycle", "usage"):
        part = result[kind]
        part["cpu_ms_per_event"] = round(1000 * (part["process_cpu"] + part["backend_cpu"]) / max(part["events"], 1), 3)
    drop_database(url)
    return result


def benchmark(run: Run) -> dict[str, Any]:
    args = run.args
    report: dict[str, Any] = start_conditions(args.wait_others)
    report["postgres"] = server_info(args.database_url.rsplit("/", 1)[0] + "/postgres")
    if "bulk" in args.phases:
        report["bulk"] = bulk(run)
    if "processing" in args.phases:
        report["processing"] = processing(run)
    report["machine_after"] = machine_info()
    return report


def judge(report: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    targets: dict[str, Any] = {}
    if bulk := report.get("bulk"):
        plain = bulk["plain_aggregate"]["seconds"]
        limit = MAX_SECONDS * args.workspaces / 100_000
        for name in ("first_pass", "daily_pass"):
            seconds = bulk[name]["seconds"]
            bulk[name]["ratio_to_plain_aggregate"] = ratio = round(seconds / plain, 2)
            targets[f"{name}_seconds"] = {"target": f"<= {limit:g} s ({args.workspaces:,} workspaces)",
                                          "value": seconds, "pass": seconds <= limit}  # fmt: skip
            targets[f"{name}_ratio_to_plain_aggregate"] = {"target": f"<= {MAX_RATIO}", "value": ratio,
                                                           "pass": ratio <= MAX_RATIO}  # fmt: skip
            growth = bulk[name]["rss_growth"]
            targets[f"{name}_rss_growth"] = {"target": f"<= {FLAT} (end ÷ first tenth - 1)", "value": growth,
                                             "pass": growth is not None and growth <= FLAT}  # fmt: skip
        daily = bulk["daily_pass"]
        targets["every_workspace_profiled"] = {
            "target": f"the first pass visits and profiles all {args.workspaces:,}; the daily pass exactly the due "
            "ones",
            "value": [bulk["first_pass"]["visited"], daily["rows_after"]["usage_profile"], daily["visited"],
                      daily.get("due_before")],
            "pass": bulk["first_pass"]["visited"] == args.workspaces == daily["rows_after"]["usage_profile"]
            >= daily["visited"] == daily.get("due_before") > 0,
        }  # fmt: skip
    if processing := report.get("processing"):
        for kind in ("lifecycle", "usage"):
            ratio = processing[f"{kind}_cost_ratio_off_to_on"]
            passed = ratio is not None and ratio >= MIN_COST_RATIO
            target = f">= {MIN_COST_RATIO} (CPU per event off ÷ on, {args.pairs} pair(s) of runs)"
            targets[f"{kind}_cost_ratio_off_to_on"] = {"target": target, "value": ratio, "pass": passed}
        statuses = [processing[mode]["events_by_status"] for mode in ("on", "off")]
        targets["processing_all_completed"] = {
            "target": "every event completed, profiles only when on",
            "value": {"statuses": statuses, "profiles": [processing["on"]["profiles"], processing["off"]["profiles"]]},
            "pass": all(set(s) == {"completed"} for s in statuses) and processing["on"]["profiles"] > 0
            and processing["off"]["profiles"] == 0,
        }  # fmt: skip
    return targets


def print_summary(report: dict[str, Any], targets: dict[str, Any]) -> None:
    print()
    if bulk := report.get("bulk"):
        data = bulk["data"]
        print(f"rollups: {data['rows']} ({data['database_size']})")
        plain = bulk["plain_aggregate"]
        print(f"plain aggregate: {plain['seconds']:.2f} s {plain['per_table_seconds']}")
        for name in ("first_pass", "daily_pass"):
            p = bulk[name]
            print(f"{name}: {p['seconds']:.1f} s ({p['workspaces_per_second']:,.0f} ws/s), "
                  f"ratio {p.get('ratio_to_plain_aggregate')}, CPU {p['cpu_seconds']}, RSS {p['rss_mb']}, "
                  f"machine busy {p['machine_busy_pct']} %")  # fmt: skip
    if processing := report.get("processing"):
        for mode in ("on", "off"):
            runs = processing[f"{mode}_runs_cpu_ms_per_event"]
            print(f"profiles {mode:<3}: lifecycle {runs['lifecycle']} ms CPU/event, "
                  f"usage {runs['usage']} ms CPU/event (each run)")  # fmt: skip
    print(f"load average before {report['machine_before']['load_average']}, after "
          f"{report['machine_after']['load_average']}\n")  # fmt: skip
    scaffold.print_targets(targets)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = scaffold.parser("behaviour", __doc__, "Bulk pass ÷ plain aggregate; processing cost on ÷ off.")
    parser.add_argument("--workspaces", type=int, default=100_000, help="workspaces of the bulk pass")
    parser.add_argument("--phases", nargs="+", choices=("bulk", "processing"), default=["bulk", "processing"])
    parser.add_argument("--process-workspaces", type=int, default=2_000, help="workspaces of the processing phase")
    parser.add_argument("--lifecycle-events", type=int, default=10_000, help="lifecycle events to process")
    parser.add_argument("--usage-events", type=int, default=50_000, help="usage events to roll up")
    parser.add_argument("--chunk", type=int, default=100, help="workspaces per process_workspaces call")
    parser.add_argument("--pairs", type=int, default=3,
                        help="processing phase: runs with profiles on and off, alternating which goes first; the "
                        "ratio is the CPU of every off run ÷ that of every on run")  # fmt: skip
    parser.add_argument("--batch", type=int, default=None,
                        help="usage events per rollup batch (default: the engine's own, usage.rollups.DEFAULT_LIMIT, "
                        "which the deployed rollup task drains a backlog with)")  # fmt: skip
    parser.add_argument("--reuse-database", action="store_true",
                        help="bulk phase on the data an earlier --keep-database run generated today for as many "
                        "workspaces (its behaviour rows emptied) instead of generating it again")  # fmt: skip
    parser.add_argument("--at", help=argparse.SUPPRESS)
    scaffold.common_arguments(
        parser,
        "behaviour",
        database_url=DEFAULT_DATABASE_URL,
        children=("sweep", "process"),
        quick="10,000 workspaces; 2,000 lifecycle and 10,000 usage events over 400 workspaces",
    )
    quick = {"workspaces": 10_000, "process_workspaces": 400, "lifecycle_events": 2_000, "usage_events": 10_000,
             "pairs": 1}  # fmt: skip
    args = scaffold.parse(parser, argv, quick=quick)
    if args.lifecycle_events < args.process_workspaces:
        parser.error("--lifecycle-events must be at least --process-workspaces")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return scaffold.run_benchmark("behaviour", args, argv, Run, benchmark, lambda r: judge(r, args), print_summary,
                                  child_main)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
