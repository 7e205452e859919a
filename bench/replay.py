#!/usr/bin/env python
"""Replay benchmark: re-fold every workspace from a large event cache, against a plain COPY of it.

N lifecycle events (status `completed`) over W workspaces are loaded with COPY into a throw-away
PostgreSQL database. Then:

1. copy    — the baseline: `COPY (SELECT <the replay's columns> FROM events_event WHERE <the replay's
             filter> ORDER BY workspace_key, occurred_at, id) TO STDOUT` through psycopg, every row
             consumed (one untimed warm-up, then the best of --copy-runs).
2. replay  — processing.replay.folded_workspaces() consumed to the end in one Django process, its RSS
             sampled every 100,000 events (flat memory: the stream must not accumulate).
3. profile — cProfile over the first --profile-events events of the same stream, with the time of
             the bare stream (no validation, no fold) for comparison.

Ratio replay ÷ COPY, peak RSS and the RSS series go to bench/results/replay.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import pstats
import resource
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import scaffold
from common import (
    LIFECYCLE_TYPES,
    copy_events,
    db_name,
    django_env,
    django_setup,
    drop_database,
    emit,
    libpq_dsn,
    lifecycle_rows,
    migrate,
    proc_status,
    recreate_database,
    run_child,
    server_info,
    start_conditions,
    vacuum_analyze,
)
from scaffold import Progress, machine_info, say

SCRIPT = Path(__file__).resolve()
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/lifecycle_bench_replay"
TARGET_RATIO = 100.0  # replay time ÷ COPY time, at most
TARGET_RSS_MB = 300.0  # peak RSS of the replay process, at most
FLAT_TOLERANCE = 0.15  # the last RSS sample within 15 % of the sample at 20 % of the events
SAMPLE_EVERY = 100_000
FOLDED = ("new", "processing", "completed", "error", "review")  # processing.pipeline.FOLDED_STATUSES


def _in(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


# The rows and order of processing.replay._event_stream, as one COPY.
COPY_SQL = (
    "COPY (SELECT workspace_key, external_id, type, occurred_at, payload, source FROM events_event"  # noqa: S608
    f" WHERE type IN {_in(LIFECYCLE_TYPES)} AND status IN {_in(FOLDED)}"
    " ORDER BY workspace_key, occurred_at, id) TO STDOUT"
)


# --- the child process (Django) ----------------------------------------------------------------------------


def rss_mb() -> float:
    return round(proc_status().get("VmRSS", 0) / 1024, 1)


def child_replay(args: argparse.Namespace) -> dict[str, Any]:
    """Consume every folded state; sample RSS every SAMPLE_EVERY events; progress lines once a second."""
    from processing.replay import ReplayReport, folded_workspaces

    rss_after_setup = rss_mb()
    report = ReplayReport()
    series: list[tuple[int, float]] = []
    states = statuses = 0
    next_sample, last_progress = SAMPLE_EVERY, 0.0
    t0 = time.monotonic()
    for state in folded_workspaces(report=report):
        states += 1
        statuses += state.status is not None
        if report.events >= next_sample:
            series.append((report.events, rss_mb()))
            next_sample += SAMPLE_EVERY
        if (now := time.monotonic()) - last_progress >= 1.0:
            last_progress = now
            emit({"progress": report.events})
    seconds = time.monotonic() - t0
    series.append((report.events, rss_mb()))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "seconds": seconds,
        "events": report.events,
        "workspaces": states,
        "workspaces_with_status": statuses,
        "unreadable": report.unreadable,
        "rss_after_setup_mb": rss_after_setup,
        "rss_series": series,
        "peak_rss_mb": round(proc_status().get("VmHWM", 0) / 1024, 1),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
    }


def child_profile(args: argparse.Namespace) -> dict[str, Any]:
    """Where the time goes over the first --profile-events events: the bare stream, then cProfile."""
    from processing.replay import ReplayReport, _event_stream, folded_workspaces

    limit = args.profile_events
    t0 = time.monotonic()
    for n, _ in enumerate(_event_stream(None, 5000), 1):
        if n >= limit:
            break
    stream_seconds = time.monotonic() - t0

    report = ReplayReport()
    t0 = time.monotonic()
    for _ in folded_workspaces(report=report):
        if report.events >= limit:
            break
    plain_seconds = time.monotonic() - t0

    profile = cProfile.Profile()
    report = ReplayReport()
    profile.enable()
    for _ in folded_workspaces(report=report):
        if report.events >= limit:
            break
    profile.disable()
    text = {}
    for order in ("tottime", "cumulative"):
        buffer = io.StringIO()
        stats = pstats.Stats(profile, stream=buffer)
        stats.strip_dirs().sort_stats(order).print_stats(args.profile_lines)
        text[order] = buffer.getvalue()
    events = report.events
    return {
        "events": events,
        "stream_only_seconds": round(stream_seconds, 3),
        "replay_seconds": round(plain_seconds, 3),
        "stream_us_per_event": round(1e6 * stream_seconds / events, 1),
        "replay_us_per_event": round(1e6 * plain_seconds / events, 1),
        "profile_by_tottime": text["tottime"],
        "profile_by_cumulative": text["cumulative"],
    }


def child_main(args: argparse.Namespace) -> int:
    django_setup()
    result = child_replay(args) if args.child == "replay" else child_profile(args)
    emit({"result": result})
    return 0


# --- the baseline ------------------------------------------------------------------------------------------


def copy_out(dsn: str, *, parse: bool = False) -> dict[str, Any]:
    """Run COPY_SQL and consume every row: raw blocks (newlines counted), or parsed into tuples."""
    rows = size = 0
    with psycopg.connect(dsn, autocommit=True) as conn, conn.cursor() as cur:
        t0 = time.monotonic()
        with cur.copy(COPY_SQL) as copy:
            if parse:
                for _ in copy.rows():
                    rows += 1
            else:
                for block in copy:
                    size += len(block)
                    rows += bytes(block).count(b"\n")
        seconds = time.monotonic() - t0
    return {"seconds": round(seconds, 3), "rows": rows, "mb": round(size / 2**20, 1)}


# --- the benchmark ------------------------------------------------------------------------------------------


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.database_created = False

    def cleanup(self) -> None:
        if self.database_created and not self.args.keep_database:
            with contextlib.suppress(psycopg.Error):
                drop_database(self.args.database_url)


def benchmark(run: Run) -> dict[str, Any]:
    args = run.args
    dsn = libpq_dsn(args.database_url)
    report: dict[str, Any] = start_conditions(args.wait_others)
    say(f"creating {db_name(args.database_url)} and migrating it")
    recreate_database(args.database_url)
    run.database_created = True
    env = django_env(args.database_url)
    migrate(env)
    report["postgres"] = server_info(args.database_url)
    t0 = time.monotonic()
    rows = lifecycle_rows(events=args.events, workspaces=args.workspaces, seed=args.seed, status="completed")
    loaded = copy_events(dsn, rows, total=args.events, label="load (COPY)", quiet=args.no_progress)
    vacuum_analyze(dsn, "events_event")
    with psycopg.connect(dsn, autocommit=True) as conn:
        size = conn.execute("SELECT pg_total_relation_size('events_event')").fetchone()[0]
    report["cache"] = {"events": loaded, "workspaces": args.workspaces, "table_mb": round(size / 2**20, 1),
                       "load_seconds": round(time.monotonic() - t0, 1)}  # fmt: skip

    seen = {line.split()[0]: line[:160] for line in scaffold.other_benchmarks()}
    say("COPY baseline: one warm-up, then the best of " + str(args.copy_runs))
    copy_out(dsn)
    runs = [copy_out(dsn) for _ in range(args.copy_runs)]
    report["copy"] = {"runs": runs, "seconds": min(r["seconds"] for r in runs), "rows": runs[0]["rows"],
                      "mb": runs[0]["mb"], "parsed_rows": copy_out(dsn, parse=True)}  # fmt: skip
    report["copy"]["events_per_second"] = round(loaded / report["copy"]["seconds"])

    say("replay: processing.replay.folded_workspaces(), every state consumed")
    progress = Progress("replay", loaded, quiet=args.no_progress, unit=" ev")
    started = [False]

    def on_line(message: dict) -> None:
        if not started[0]:
            progress.restart()
            started[0] = True
        progress.show(message["progress"])

    seen.update({line.split()[0]: line[:160] for line in scaffold.other_benchmarks()})
    replay = run_child(SCRIPT, ["--child", "replay", "--database-url", args.database_url], env, on_line=on_line)
    seen.update({line.split()[0]: line[:160] for line in scaffold.other_benchmarks()})
    report["other_benchmarks_seen"] = sorted(seen.values())
    progress.show(replay["events"], final=True)
    replay["seconds"] = round(replay["seconds"], 3)
    replay["events_per_second"] = round(replay["events"] / replay["seconds"])
    report["replay"] = replay

    if args.profile_events:
        say(f"profile: the first {args.profile_events:,} events under cProfile")
        report["profile"] = run_child(
            SCRIPT,
            ["--child", "profile", "--database-url", args.database_url, "--profile-events", str(args.profile_events),
             "--profile-lines", str(args.profile_lines)],
            env,
        )  # fmt: skip
    report["machine_after"] = machine_info()
    return report


def flatness(series: list[list[float]], events: int) -> dict[str, Any]:
    """The last RSS sample against the one taken at (about) 20 % of the events."""
    if not series:
        return {"flat": False}
    at20 = min(series, key=lambda s: abs(s[0] - 0.2 * events))
    last = series[-1]
    growth = (last[1] - at20[1]) / at20[1] if at20[1] else 0.0
    return {"sample_at_20pct": at20, "last_sample": last, "growth": round(growth, 3), "flat": growth <= FLAT_TOLERANCE}


def judge(report: dict[str, Any]) -> dict[str, Any]:
    replay, copy = report["replay"], report["copy"]
    ratio = replay["seconds"] / copy["seconds"]
    report["ratio_replay_to_copy"] = round(ratio, 1)
    report["rss_flatness"] = flatness(replay["rss_series"], replay["events"])
    return {
        "ratio_replay_to_copy": {"target": f"<= {TARGET_RATIO:.0f}", "value": round(ratio, 1),
                                 "pass": ratio <= TARGET_RATIO},
        "replay_peak_rss_mb": {"target": f"<= {TARGET_RSS_MB:.0f}", "value": replay["peak_rss_mb"],
                               "pass": replay["peak_rss_mb"] <= TARGET_RSS_MB},
        "replay_rss_flat": {"target": f"last sample within {FLAT_TOLERANCE:.0%} of the sample at 20 %",
                            "value": report["rss_flatness"]["growth"], "pass": report["rss_flatness"]["flat"]},
        "replay_saw_every_event": {"target": f"{report['cache']['events']} events, {report['cache']['workspaces']} "
                                   "workspaces, none unreadable",
                                   "value": [replay["events"], replay["workspaces"], replay["unreadable"]],
                                   "pass": replay["events"] == report["cache"]["events"]
                                   and replay["workspaces"] == report["cache"]["workspaces"]
                                   and replay["unreadable"] == 0},
    }  # fmt: skip


def print_summary(report: dict[str, Any], targets: dict[str, Any]) -> None:
    replay, copy = report["replay"], report["copy"]
    print()
    print(
        f"COPY baseline   {copy['rows']:>10,} rows in {copy['seconds']:8.2f} s = {copy['events_per_second']:>10,}/s "
        f"({copy['mb']} MB; parsed into tuples: {copy['parsed_rows']['seconds']} s)"
    )
    print(
        f"replay          {replay['events']:>10,} events in {replay['seconds']:6.2f} s = "
        f"{replay['events_per_second']:>10,}/s over {replay['workspaces']:,} workspaces"
    )
    print(f"ratio replay ÷ COPY: {report['ratio_replay_to_copy']}  (target <= {TARGET_RATIO:.0f})")
    print(
        f"replay RSS: after setup {replay['rss_after_setup_mb']} MB, peak {replay['peak_rss_mb']} MB; series "
        + ", ".join(f"{int(n / 1000)}k:{mb}" for n, mb in replay["rss_series"])
    )
    if "profile" in report:
        p = report["profile"]
        print(
            f"profile over {p['events']:,} events: bare stream {p['stream_us_per_event']} µs/event, "
            f"replay {p['replay_us_per_event']} µs/event (top functions in the JSON)"
        )
    print()
    scaffold.print_targets(targets)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = scaffold.parser(
        "replay",
        __doc__,
        "Times processing.replay.folded_workspaces() over the whole cache against a COPY of the same rows"
        " in the same order, and samples the replay's memory.",
    )
    parser.add_argument("--events", type=int, default=1_000_000, help="lifecycle events in the cache")
    parser.add_argument("--workspaces", type=int, default=200_000, help="workspaces the events are about")
    parser.add_argument("--copy-runs", type=int, default=2, help="timed COPY runs after the warm-up (best counts)")
    parser.add_argument("--profile-events", type=int, default=100_000,
                        help="profile the replay of this many events with cProfile (0: no profile)")  # fmt: skip
    parser.add_argument("--profile-lines", type=int, default=30, help="functions listed per profile ordering")
    scaffold.common_arguments(
        parser,
        "replay",
        database_url=DEFAULT_DATABASE_URL,
        children=("replay", "profile"),
        wait_others=scaffold.wait_others_help(),
        quick="100,000 events over 20,000 workspaces, profile of 20,000",
    )
    quick = {"events": 100_000, "workspaces": 20_000, "profile_events": 20_000}
    return scaffold.parse(parser, argv, quick=quick, backlog=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return scaffold.run_benchmark("replay", args, argv, Run, benchmark, judge, print_summary, child_main)


if __name__ == "__main__":
    sys.exit(main())
