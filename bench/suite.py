#!/usr/bin/env python
"""The benchmark suite: every benchmark in sequence, then one summary table of measure vs target.

Runs ingest, process, replay, salesforce (economy, freshness, faults), queue, audit, behaviour,
usage_freshness, triggers_processing, trigger_latency and timers, each as its own subprocess with its own
arguments (`--quick` passes through), each writing bench/results/<name>.json (<name>-quick.json with
--quick). Then builds bench/results/summary.json and bench/results/SUMMARY.md from every result's `targets`
— also without running anything (`--summary-only`),
from the JSONs already there. Exit status 0 only when every step ran and every target passed.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS_DIR = BENCH / "results"


@dataclass(frozen=True)
class Step:
    name: str
    script: str
    what: str
    args: tuple[str, ...] = ()
    minutes: float = 10.0  # expected duration of a full run when no earlier result says otherwise
    quick_minutes: float = 2.0


STEPS = (
    Step("ingest", "ingest.py", "signed webhooks at gunicorn ÷ raw psycopg inserts; paced p99", minutes=8),
    Step("process", "process.py", "backlog drained by qcluster (ORM, Redis) ÷ in-process", minutes=60, quick_minutes=4),
    Step("replay", "replay.py", "1,000,000 cached events re-folded ÷ COPY; peak RSS", minutes=10, quick_minutes=3),
    Step(
        "salesforce",
        "salesforce_sync.py",
        "API calls ÷ naive; accepted → in Salesforce p99 (and with faults)",
        minutes=60,
        quick_minutes=8,
    ),
    Step(
        "queue",
        "queue_overhead.py",
        "per-task cost of django-q2 (ORM, Redis) ÷ direct calls",
        minutes=15,
        quick_minutes=4,
    ),
    Step("audit", "audit.py", "processing throughput with auditlog on ÷ off", minutes=20, quick_minutes=3),
    Step(
        "behaviour",
        "behaviour.py",
        "behaviour sweep over 100,000 workspaces ÷ a plain aggregate; processing CPU with profiles on ÷ off",
        minutes=15,
        quick_minutes=3,
    ),
    Step(
        "usage_freshness",
        "usage_freshness.py",
        "usage events at 500/s in batches: accepted → profile re-evaluated p99; CPU per event profiles off ÷ on",
        minutes=5,
        quick_minutes=3,
    ),
    Step(
        "triggers_processing",
        "triggers_processing.py",
        "processing CPU per event with triggers off ÷ on (none matching; every workspace firing twice)",
        minutes=3,
        quick_minutes=1,
    ),
    Step(
        "trigger_latency",
        "trigger_latency.py",
        "usage events at 500/s with 50 triggers: accepted → action delivery enqueued (dispatch row) p99",
        minutes=6,
        quick_minutes=3,
    ),
    Step(
        "timers",
        "timers.py",
        "100,000 pending timers: lateness of each due one with the timer loop (fire_timers)",
        minutes=12,
        quick_minutes=3,
    ),
)
NAMES = tuple(step.name for step in STEPS)


def result_path(name: str, *, quick: bool) -> Path:
    return RESULTS_DIR / f"{name}{'-quick' if quick else ''}.json"


def say(message: str) -> None:
    print(f"== {message}", file=sys.stderr, flush=True)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


# --- running ---------------------------------------------------------------------------------------------


def expected_seconds(step: Step, *, quick: bool) -> float:
    """How long the step took last time (its JSON's timestamp → finished), else the built-in guess."""
    try:
        document = json.loads(result_path(step.name, quick=quick).read_text())
        start = datetime.fromisoformat(document["timestamp"])
        return max(1.0, (datetime.fromisoformat(document["finished"]) - start).total_seconds())
    except (OSError, ValueError, KeyError):
        return 60 * (step.quick_minutes if quick else step.minutes)


def step_command(step: Step, args: argparse.Namespace) -> list[str]:
    command = [sys.executable, str(BENCH / step.script), *step.args]
    if args.quick:
        command.append("--quick")
    command += ["--output", str(result_path(step.name, quick=args.quick))]
    for extra in args.step_args:
        name, _, value = extra.partition("=")
        if name == step.name:
            command += shlex.split(value)
    return command


def run_steps(steps: list[Step], args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Run each step as a subprocess (its output passes through); return {name: exit code, seconds}."""
    outcomes: dict[str, dict[str, Any]] = {}
    expected = {step.name: expected_seconds(step, quick=args.quick) for step in steps}
    suite_start = time.monotonic()
    for number, step in enumerate(steps, 1):
        remaining = sum(expected[s.name] for s in steps[number - 1 :])
        command = step_command(step, args)
        say(f"[{number}/{len(steps)}] {step.name}: {step.what}")
        say(f"    {shlex.join(command[1:])}")
        say(f"    expected {_minutes(expected[step.name])}; suite ETA {_minutes(remaining)} "
            f"(elapsed {_minutes(time.monotonic() - suite_start)})")  # fmt: skip
        t0 = time.monotonic()
        started = datetime.now(UTC)
        try:
            code = subprocess.run(command, cwd=REPO, check=False).returncode
        except KeyboardInterrupt:
            say(f"interrupted during {step.name}")
            raise
        seconds = time.monotonic() - t0
        outcomes[step.name] = {"exit": code, "seconds": round(seconds, 1), "started": started.isoformat()}
        verdict = {0: "all targets pass", 1: "some target failed"}.get(code, f"error (exit {code})")
        left = sum(expected[s.name] for s in steps[number:])
        say(f"[{number}/{len(steps)}] {step.name}: {verdict} after {_minutes(seconds)}"
            + (f"; suite ETA {_minutes(left)}" if left else ""))  # fmt: skip
    return outcomes


# --- the summary -----------------------------------------------------------------------------------------


def load_results(*, quick: bool) -> dict[str, dict[str, Any] | None]:
    out: dict[str, dict[str, Any] | None] = {}
    for name in NAMES:
        try:
            out[name] = json.loads(result_path(name, quick=quick).read_text())
        except FileNotFoundError:
            out[name] = None
    return out


def load_average(document: dict[str, Any]) -> list[float] | None:
    for key in ("machine_before", "machine"):
        if isinstance(document.get(key), dict) and "load_average" in document[key]:
            return document[key]["load_average"]
    return None


def format_value(value: Any, limit: int = 70) -> str:
    """A target's value in one table cell: numbers as they are, structures compactly."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, list) and len(value) == 1:
        return format_value(value[0], limit)
    if isinstance(value, dict):
        text = ", ".join(f"{k}: {format_value(v, limit)}" for k, v in value.items())
    elif isinstance(value, list):
        text = ", ".join(format_value(v, limit) for v in value)
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _older(timestamp: str | None, than: str) -> bool:
    """A result written before its step started this time (the step failed before writing its own)."""
    if not timestamp:
        return True
    return datetime.fromisoformat(timestamp) < datetime.fromisoformat(than).replace(microsecond=0)


def build_summary(results: dict[str, dict[str, Any] | None], *, quick: bool,
                  outcomes: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:  # fmt: skip
    """Rows `benchmark | measure | value | target | pass` from every result's targets, and how each was run."""
    outcomes = outcomes or {}
    rows, runs = [], {}
    for name, document in results.items():
        outcome = outcomes.get(name)
        if document is None:
            runs[name] = {"file": None, "ran_now": outcome}
            continue
        stale = bool(outcome) and _older(document.get("timestamp"), outcome["started"])
        runs[name] = {
            "file": str(result_path(name, quick=quick).relative_to(REPO)),
            "timestamp": document.get("timestamp"),
            "finished": document.get("finished"),
            "git": document.get("git"),
            "command": document.get("command"),
            "note": document.get("note") or "",
            "background_busy_pct": document.get("background_busy_pct"),
            "load_average": load_average(document),
            "all_pass": document.get("all_pass"),
            "ran_now": outcome,
            "stale": stale,  # the step ran now but failed before writing: these figures are older
        }
        for measure, target in document.get("targets", {}).items():
            rows.append({"benchmark": name, "measure": measure, "value": target.get("value"),
                         "target": target.get("target"), "pass": bool(target.get("pass"))})  # fmt: skip
    failed_steps = sorted(n for n, o in outcomes.items() if o["exit"] not in (0, 1))
    return {
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "quick" if quick else "full",
        "rows": rows,
        "runs": runs,
        "missing": sorted(n for n, r in runs.items() if r["file"] is None),
        "failed_steps": failed_steps,
        "all_pass": bool(rows) and all(r["pass"] for r in rows) and not failed_steps,
    }


def markdown(summary: dict[str, Any], *, level: int = 1) -> str:
    lines = [
        f"{'#' * level} Benchmark summary ({summary['mode']} runs)",
        "",
        f"Generated {summary['generated']} by `bench/suite.py` from `bench/results/*.json`. "
        + ("Every target passes." if summary["all_pass"] else "**Some targets fail or steps did not run.**"),
        "",
        "| benchmark | measure | value | target | pass |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in summary["rows"]:
        value = format_value(row["value"]).replace("|", "\\|")
        target = str(row["target"]).replace("|", "\\|")
        lines.append(f"| {row['benchmark']} | {row['measure']} | {value} | {target} | "
                     f"{'pass' if row['pass'] else '**FAIL**'} |")  # fmt: skip
    lines += [
        "",
        f"{'#' * (level + 1)} How and when each was measured",
        "",
        "Background load is the machine's busy share measured just before the run (2 cores, shared):",
        "figures taken above ~20 % are lower than the code can do on a quiet machine.",
        "",
        "| benchmark | measured (UTC) | git | background busy | load average (1, 5, 15 min) | note |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, run in summary["runs"].items():
        if run["file"] is None:
            lines.append(f"| {name} | not run | | | | |")
            continue
        busy = run["background_busy_pct"]
        busy_text = (
            f"{busy:.0f} %" + (" (loaded)" if busy is not None and busy > 20 else "") if busy is not None else "?"
        )
        load = ", ".join(f"{x:.1f}" for x in run["load_average"]) if run["load_average"] else "?"
        note = (run["note"] or "").replace("|", "\\|")
        if run["stale"]:
            note = f"**step failed in the last suite run; figures from before.** {note}"
        lines.append(f"| {name} | {run['timestamp']} | {run['git'] or '?'} | {busy_text} | {load} | {note[:160]} |")
    if summary["failed_steps"]:
        lines += ["", f"Steps that ended in an error: {', '.join(summary['failed_steps'])}."]
    return "\n".join(lines) + "\n"


DOCS = REPO / "docs" / "benchmarks.md"
DOCS_START, DOCS_END = "<!-- figures:start (bench/suite.py --summary-only --update-docs) -->", "<!-- figures:end -->"


def update_docs(path: Path = DOCS) -> None:
    """Replace the figures block of docs/benchmarks.md with the tables of the full and the quick results."""
    text = path.read_text()
    start, end = text.find(DOCS_START), text.find(DOCS_END)
    if start < 0 or end < start:
        raise SystemExit(f"{path}: no figures block ({DOCS_START} … {DOCS_END})")
    tables = [markdown(build_summary(load_results(quick=quick), quick=quick), level=3) for quick in (False, True)]
    block = "\n".join([DOCS_START, "", *tables, DOCS_END])
    path.write_text(text[:start] + block + text[end + len(DOCS_END) :])


def write_summary(summary: dict[str, Any], *, quick: bool) -> tuple[Path, Path]:
    suffix = "-quick" if quick else ""
    json_path, md_path = RESULTS_DIR / f"summary{suffix}.json", RESULTS_DIR / f"SUMMARY{suffix}.md"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    md_path.write_text(markdown(summary))
    return json_path, md_path


# --- main -------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    steps = "\n".join(f"  {s.name:<11} bench/{s.script}: {s.what}" for s in STEPS)
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"steps, in order:\n{steps}\n\nNeeds PostgreSQL on 127.0.0.1:5432 (user postgres) and Redis on "
        "127.0.0.1:6379; each benchmark creates and drops its own '*bench*' database and flushes its own Redis "
        "database. A full run takes hours on a 2-core machine; --quick takes about half an hour.\n"
        "Exit status: 0 every target passed, 1 a target failed, 2 a step ended in an error or did not run.",
    )
    parser.add_argument("--quick", action="store_true",
                        help="pass --quick to every step; results in <name>-quick.json, SUMMARY-quick.md")  # fmt: skip
    parser.add_argument("--only", nargs="+", choices=NAMES, metavar="NAME",
                        help=f"run only these steps ({', '.join(NAMES)}); the summary still covers all")  # fmt: skip
    parser.add_argument("--skip", nargs="+", choices=NAMES, default=[], metavar="NAME", help="run all but these")
    parser.add_argument("--summary-only", action="store_true",
                        help="run nothing: rebuild summary.json and SUMMARY.md from the JSONs there")  # fmt: skip
    parser.add_argument("--update-docs", action="store_true",
                        help="also rewrite the figures of docs/benchmarks.md (full and quick tables)")  # fmt: skip
    parser.add_argument("--step-args", action="append", default=[], metavar="NAME=ARGS",
                        help="extra arguments for one step, e.g. --step-args 'process=--wait-others 1200' "
                             "(repeatable)")  # fmt: skip
    args = parser.parse_args(argv)
    for extra in args.step_args:
        name, sep, _ = extra.partition("=")
        if not sep or name not in NAMES:
            parser.error(f"--step-args {extra!r}: expected NAME=ARGS with NAME one of {', '.join(NAMES)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    outcomes: dict[str, dict[str, Any]] = {}
    if not args.summary_only:
        chosen = [s for s in STEPS if (not args.only or s.name in args.only) and s.name not in args.skip]
        if not chosen:
            say("no step left to run")
            return 2
        try:
            outcomes = run_steps(chosen, args)
        except KeyboardInterrupt:
            return 130
    summary = build_summary(load_results(quick=args.quick), quick=args.quick, outcomes=outcomes)
    json_path, md_path = write_summary(summary, quick=args.quick)
    print(markdown(summary))
    say(f"summary written to {json_path.relative_to(REPO)} and {md_path.relative_to(REPO)}")
    if args.update_docs:
        update_docs()
        say(f"figures of {DOCS.relative_to(REPO)} rewritten")
    if summary["failed_steps"] or summary["missing"]:
        return 2
    return 0 if summary["all_pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
