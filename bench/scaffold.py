"""What every benchmark does the same way: its common options, its signals, its results JSON, its output.

A benchmark script keeps its own options, phases, targets and summary; it builds its parser with
`parser()` + `common_arguments()`, reads it with `parse()`, and hands `run_benchmark()` its `Run` (what
must be cleaned up), `benchmark()` and `judge()`. Then every benchmark

- stops cleanly on Ctrl-C, SIGTERM and SIGHUP (SIGINT also when started in the background), cleaning up
  its databases, processes and scratch files, exit status 130;
- exits 2 on an expected error (a child that failed, a database that refused), with the logs its `Run`
  offers, and 1 when a target or check fails, 0 when all pass;
- writes `{benchmark, timestamp, finished, command, git, note, parameters, targets, all_pass, …report}`
  to `--output` (bench/results/<name>.json; bench/suite.py passes <name>-quick.json with --quick);
- prints its progress and messages on stderr in one format.

This module imports no other bench module, so every one of them (ingest.py included) can import it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS_DIR = BENCH / "results"
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
    RuntimeError,
    psycopg.OperationalError,
    subprocess.CalledProcessError,
)
OTHER_BENCHMARKS = "bench/ingest.py|bench/salesforce_sync.py"
REDIS_PHASE = "for the redis phase, Redis (the database of --redis is flushed before and after)"


# --- output -----------------------------------------------------------------------------------------------


def say(message: str) -> None:
    print(f"-- {message}", file=sys.stderr, flush=True)


class Progress:
    """`[label] done/total (pct)  rate/s  elapsed  ETA` on stderr: a carriage-return line on a terminal,
    a line every 5 s in a log file."""

    def __init__(self, label: str, total: int, *, quiet: bool = False, unit: str = "") -> None:
        self.label, self.total, self.quiet, self.unit = label, total, quiet, unit
        self.t0 = time.monotonic()
        self.last = 0.0
        self.every = 1.0 if sys.stderr.isatty() else 5.0

    def restart(self, t0: float | None = None) -> None:
        self.t0 = time.monotonic() if t0 is None else t0

    def show(self, done: int, *, final: bool = False, extra: str = "") -> None:
        now = time.monotonic()
        if self.quiet or (not final and now - self.last < self.every):
            return
        self.last = now
        elapsed = now - self.t0
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = f"{(self.total - done) / rate:6.1f}s" if rate > 0 else "     ?"
        pct = 100 * done / self.total if self.total else 100.0
        line = (
            f"[{self.label}] {done:>9,}/{self.total:,} ({pct:5.1f}%)  {rate:8,.0f}{self.unit}/s  "
            f"elapsed {elapsed:6.1f}s  ETA {eta}{extra}"
        )
        if sys.stderr.isatty():
            sys.stderr.write("\r" + line + ("\n" if final else ""))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()


def print_targets(targets: dict[str, Any]) -> None:
    """One `PASS|FAIL  name: value (target …)` line per target, structures as JSON."""
    for name, t in targets.items():
        value = json.dumps(t["value"]) if isinstance(t["value"], dict | list) else t["value"]
        print(f"{'PASS' if t['pass'] else 'FAIL'}  {name}: {value} (target {t['target']})")


def tail(path: Path | str, lines: int = 20) -> str:
    """The last lines of a log file ("" if it cannot be read)."""
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --- the machine and other benchmarks ----------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "memory_mb": _meminfo_mb(),
    }


def _meminfo_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 0


def other_benchmarks(pattern: str = OTHER_BENCHMARKS) -> list[str]:
    """Command lines of other benchmark processes running on this machine (they skew every figure)."""
    done = subprocess.run(["pgrep", "-af", pattern], capture_output=True, text=True, check=False)
    me = {os.getpid(), os.getppid()}
    return [line for line in done.stdout.splitlines() if line and int(line.split()[0]) not in me]


def wait_for_other_benchmarks(limit: float, *, pattern: str = OTHER_BENCHMARKS, poll: float = 30.0) -> dict[str, Any]:
    """Wait up to `limit` seconds (polling every `poll`) until no other benchmark runs; say what was seen."""
    started = time.monotonic()
    seen = other_benchmarks(pattern)
    while seen and time.monotonic() - started < limit:
        say(f"another benchmark is running ({seen[0][:100]}); waiting (up to {limit:.0f} s in all)")
        time.sleep(poll)
        seen = other_benchmarks(pattern)
    return {"waited_seconds": round(time.monotonic() - started, 1), "still_running": seen}


# --- arguments --------------------------------------------------------------------------------------------


def wait_others_help(pattern: str = OTHER_BENCHMARKS) -> str:
    """The help of --wait-others for a benchmark that waits for the ones `pattern` names."""
    return (
        f"first wait up to this long (polling every 30 s) until no other benchmark ({', '.join(pattern.split('|'))})"
        " runs; the final figures use 1200"
    )


def db_name(database_url: str) -> str:
    return urlsplit(database_url).path.lstrip("/")


def parser(
    name: str, doc: str, what: str, *, redis: str = "", template: bool = False, note: str = ""
) -> argparse.ArgumentParser:
    """The parser of a benchmark: its docstring's first paragraph and `what` it compares as the description,
    and one epilog saying what it needs (`redis`: when it needs Redis), what it creates and its exit status."""
    databases = "the database of --database-url" + (" and a '_template' sibling are" if template else " is")
    needs = (
        f"Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth; {databases} created and dropped, the "
        f"name must contain 'bench')" + (f" and, {redis}" if redis else "") + "."
    )
    return argparse.ArgumentParser(
        description=" ".join(filter(None, (doc.split("\n\n")[0], what, f"Writes bench/results/{name}.json."))),
        epilog=f"{needs} {note + ' ' if note else ''}Exit status 0 when every target and check passes, 1 when one "
        "fails, 2 on an error, 130 when interrupted.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )


def common_arguments(
    parser: argparse.ArgumentParser,
    name: str,
    *,
    database_url: str,
    quick: str,
    database_help: str = "PostgreSQL database to create, use and drop",
    seed_help: str = "seed of the event generator",
    wait_others: str | None = "first wait up to this long (polling every 30 s) for other benchmarks to end",
    redis: str | None = None,
    keep_logs: str | None = None,
    children: Iterable[str] = (),
) -> None:
    """The options every benchmark has (and, when asked for, the ones several have), with one meaning each.

    `quick` is the help of --quick (what the smoke run sizes are); `children` the values of the hidden
    --child option a benchmark re-runs itself with.
    """
    parser.add_argument("--database-url", default=database_url, help=database_help)
    if redis is not None:
        parser.add_argument(
            "--redis",
            default=redis,
            help="Q_BROKER of the Redis runs (that Redis database is flushed before and after)",
        )
    parser.add_argument("--seed", type=int, default=1, help=seed_help)
    if wait_others is not None:
        parser.add_argument("--wait-others", type=float, default=0.0, metavar="SECONDS", help=wait_others)
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {quick} (unless given explicitly)")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / f"{name}.json", help="where to write the JSON")
    parser.add_argument("--keep-database", action="store_true", help="do not drop the database(s) at the end")
    if keep_logs is not None:
        parser.add_argument("--keep-logs", action="store_true", help=keep_logs)
    parser.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")
    parser.add_argument("--note", default="", help="free text stored in the JSON, e.g. which code was measured")
    if children := tuple(children):
        parser.add_argument("--child", choices=children, help=argparse.SUPPRESS)


def parse(
    parser: argparse.ArgumentParser, argv: list[str] | None, *, quick: dict[str, Any], backlog: bool = False
) -> argparse.Namespace:
    """Parse; with --quick, the smoke sizes of `quick` for every option not given explicitly; check the
    options every benchmark checks (`backlog`: --events over --workspaces, each workspace at least one).
    The hidden options (help=SUPPRESS) are not stored as parameters."""
    args = parser.parse_args(argv)
    if args.quick:
        given = argv if argv is not None else sys.argv[1:]
        for dest, value in quick.items():
            flag = "--" + dest.replace("_", "-")
            if not any(a == flag or a.startswith(flag + "=") for a in given):
                setattr(args, dest, value)
    if "bench" not in db_name(args.database_url):
        parser.error("the database is dropped at the end: its name must contain 'bench'")
    if getattr(args, "redis", None) is not None and not args.redis.startswith(("redis://", "rediss://")):
        parser.error("--redis must be a redis:// address")
    if backlog and (args.events < args.workspaces or args.workspaces < 1):
        parser.error("--events must be at least --workspaces (every workspace has a first event)")
    args._hidden = tuple(a.dest for a in parser._actions if a.help == argparse.SUPPRESS)
    return args


# --- running and results ------------------------------------------------------------------------------------


def handle_signals() -> None:
    """SIGTERM and SIGHUP stop the run like Ctrl-C (so the cleanup runs); SIGINT does even when the shell
    started the script in the background (which ignores it there)."""

    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def git_describe() -> str:
    done = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO, capture_output=True, text=True)
    return done.stdout.strip() or f"not a git checkout: {REPO}"


def parameters(args: argparse.Namespace) -> dict[str, Any]:
    hidden = set(getattr(args, "_hidden", ()))
    return {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in vars(args).items()
        if k not in hidden and not k.startswith("_")
    }


def write_results(
    name: str,
    args: argparse.Namespace,
    argv: list[str] | None,
    started: datetime,
    report: dict[str, Any],
    targets: dict[str, Any],
) -> dict[str, Any]:
    """The results document, written to args.output; returned."""
    document = {
        "benchmark": name,
        "timestamp": started.isoformat(timespec="seconds"),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "git": git_describe(),
        "note": args.note,
        "parameters": parameters(args),
        "targets": targets,
        "all_pass": all(t["pass"] for t in targets.values()),
        **report,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return document


def run_benchmark(
    name: str,
    args: argparse.Namespace,
    argv: list[str] | None,
    make_run: Callable[[argparse.Namespace], Any],
    benchmark: Callable[[Any], dict[str, Any]],
    judge: Callable[[dict[str, Any]], dict[str, Any]],
    print_summary: Callable[[dict[str, Any], dict[str, Any]], None],
    child_main: Callable[[argparse.Namespace], int] | None = None,
    *,
    errors: tuple[type[BaseException], ...] = EXPECTED_ERRORS,
) -> int:
    """The main() of every benchmark: run, clean up whatever happens, judge, write, print; the exit status.

    With --child, only `child_main(args)` runs (the benchmark re-started itself for one part of the work).
    `make_run(args)` returns what must be cleaned up: its `cleanup()` always runs; its `error_logs()`, if
    it has one, is said after an error; with --keep-logs its `tmp` folder is kept and named.
    """
    if child_main is not None and args.child:
        return child_main(args)
    handle_signals()
    run = make_run(args)
    started = datetime.now(UTC)
    try:
        report = benchmark(run)
    except KeyboardInterrupt:
        say("interrupted; cleaning up")
        return 130
    except Exception as exc:
        expected = isinstance(exc, errors)
        if expected:
            say(f"error: {exc}")
        with contextlib.suppress(Exception):
            if logs := getattr(run, "error_logs", lambda: "")():
                say(logs)
        if not expected:
            raise
        return 2
    finally:
        run.cleanup()
        if getattr(args, "keep_logs", False):
            say(f"logs kept in {run.tmp}")
    targets = judge(report)
    document = write_results(name, args, argv, started, report, targets)
    print_summary(report, targets)
    print(f"\nresults written to {args.output}")
    return 0 if document["all_pass"] else 1


def clean_tmp(tmp: Path, *, keep_logs: bool, always: Iterable[Path] = ()) -> None:
    """Remove a run's scratch folder; with --keep-logs keep its *.log files (but not those in `always`)."""
    always = set(always)
    for path in tmp.iterdir():
        if path.suffix != ".log" or not keep_logs or path in always:
            path.unlink()
    with contextlib.suppress(OSError):
        tmp.rmdir()
