"""Helpers shared by the processing benchmarks (bench/process.py, replay.py, queue_overhead.py, audit.py,
salesforce.py).

Database creation and cleanup, the broker flush, CPU accounting and the quiet-machine check come from
bench/ingest.py and are re-exported here, so every benchmark does them the same way; options, signals,
results, progress and messages are bench/scaffold.py's. What is here: a seeded generator of realistic
lifecycle event streams, loaded with COPY; the environment a Django child process runs with;
process-tree memory readings from /proc.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from ingest import (  # noqa: E402  (needs bench/ on sys.path, also when imported from elsewhere)
    QUIET_BUSY_PCT,
    admin_dsn,
    background_busy_pct,
    cpu_delta,
    cpu_snapshot,
    drop_database,
    find_cpu_roots,
    flush_broker,
    libpq_dsn,
    migrate,
    recreate_database,
    server_info,
    wait_until_quiet,
)
from scaffold import (  # noqa: E402
    OTHER_BENCHMARKS,
    REPO,
    Progress,
    clean_tmp,
    db_name,
    machine_info,
    say,
    tail,
    wait_for_other_benchmarks,
)

__all__ = [
    "QUIET_BUSY_PCT",
    "LiveRun",
    "admin_dsn",
    "background_busy_pct",
    "cpu_delta",
    "cpu_snapshot",
    "db_name",
    "drop_database",
    "find_cpu_roots",
    "flush_broker",
    "libpq_dsn",
    "migrate",
    "recreate_database",
    "server_info",
    "wait_until_quiet",
]

LIFECYCLE_TYPES = ("trial.started", "subscription.converted", "workspace.churned")
TRIAL, CONVERTED, CHURNED = LIFECYCLE_TYPES
PLANS = (("starter", 49), ("team", 297), ("business", 990))
REASONS = ("too_expensive", "missing_feature", "switched_competitor", "no_longer_needed", "")
FIRST_NAMES = ("Dana", "Sam", "Alex", "Robin", "Kim", "Jo", "Lee", "Noa", "Ari", "Mika", "Toni", "Jules")
LAST_NAMES = ("Lee", "Okafor", "Berg", "Silva", "Nakamura", "Dubois", "Kowalski", "Haddad", "Moreau", "Rossi")
FREEMAIL = ("gmail.com", "outlook.com", "yahoo.com", "hotmail.com", "icloud.com", "proton.me", "gmx.de")

# The columns COPY fills: exactly what events/store.py writes, plus completed_at for a cache of
# already processed events (replay).
EVENT_COLUMNS = (
    "source",
    "external_id",
    "type",
    "occurred_at",
    "received_at",
    "workspace_key",
    "payload",
    "status",
    "retry_count",
    "notes",
    "lease_owner",
    "completed_at",
)


# --- the event mix --------------------------------------------------------------------------------


class Mix:
    """A seeded population of workspace owners on company and free-mail domains."""

    def __init__(self, *, workspaces: int, domains: int, seed: int, freemail_share: float = 0.3) -> None:
        self.rng = random.Random(seed)
        self.workspaces = workspaces
        self.domains = [f"co{d:03d}-{self.rng.choice(LAST_NAMES).lower()}.example.com" for d in range(domains)]
        self.freemail_share = freemail_share
        self.owners: list[tuple[str, str, str, str]] = []  # email, first, last, company

    def owner(self, index: int) -> tuple[str, str, str, str]:
        rng = self.rng
        if self.owners and rng.random() < 0.03:
            owner = rng.choice(self.owners)  # the same person owns several workspaces
        else:
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            if rng.random() < self.freemail_share:
                email, company = f"{first}.{last}{index}@{rng.choice(FREEMAIL)}".lower(), ""
            else:
                domain = rng.choice(self.domains)
                email, company = f"{first}.{last}{index}@{domain}".lower(), domain.split(".")[0].title()
            owner = (email, first, last, company)
        self.owners.append(owner)
        return owner


def _rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _data(rng: random.Random, kind: str, ws: str, owner: tuple[str, str, str, str], at: datetime, plan: str) -> dict:
    email, first, last, company = owner
    if rng.random() < 0.01:
        email = f"someone.else{rng.randrange(10**6)}@{email.rpartition('@')[2]}"  # a conflicting owner
    if kind == TRIAL:
        return {
            "workspace_id": ws,
            "email": email,
            "workspace_name": f"{company or last} workspace {ws[3:]}",
            "first_name": first,
            "last_name": last,
            "company": company,
            "plan": "trial",
            "trial_expires_at": _rfc3339(at + timedelta(days=14)),
        }
    if kind == CONVERTED:
        mrr = dict(PLANS)[plan] * rng.choice((1, 1, 1, 2, 3, 5))
        return {
            "workspace_id": ws,
            "email": email,
            "plan": plan,
            "mrr": f"{mrr}.00",
            "currency": "USD",
            "subscription_id": f"sub_{ws[3:]}",
            "billing_interval": rng.choice(("month", "month", "year")),
        }
    return {"workspace_id": ws, "email": email, "churned_at": _rfc3339(at), "reason": rng.choice(REASONS)}


def _workspace_story(mix: Mix, index: int, count: int, start: datetime) -> list[tuple[str, str, datetime, dict]]:
    """`count` lifecycle events of one workspace: (external_id, type, occurred_at, payload).

    A trial, often a conversion (then renewals and seat changes), sometimes a churn, re-trials and
    win-backs; about 6 % re-deliveries (new id, same content), 3 % timestamps earlier than the event
    before them, 2 % workspaces whose first event is a conversion, 1 % events naming another owner.
    """
    rng = mix.rng
    ws = f"ws_{index:07d}"
    owner = mix.owner(index)
    plan = rng.choice(PLANS)[0]
    t = start + timedelta(days=rng.uniform(0, 60))
    status, events = None, []
    while len(events) < count:
        n = len(events)
        if events and rng.random() < 0.06:
            _, kind, at, payload = events[-1]
            events.append((f"evt_{ws}_{n:03d}", kind, at, payload))  # delivered twice
            continue
        r = rng.random()
        if status is None:
            kind = CONVERTED if r < 0.02 else TRIAL
        elif status == "trial":
            kind = CONVERTED if r < 0.75 else CHURNED if r < 0.9 else TRIAL
        elif status == "paid":
            kind = CONVERTED if r < 0.65 else CHURNED if r < 0.9 else TRIAL
        else:
            kind = TRIAL if r < 0.6 else CONVERTED if r < 0.85 else CHURNED
        if kind == CONVERTED and rng.random() < 0.03:
            plan = rng.choice(PLANS)[0]  # a plan change
        status = {TRIAL: "trial" if status != "paid" else "paid", CONVERTED: "paid", CHURNED: "churned"}[kind]
        t += timedelta(days=rng.uniform(0.5, 20), seconds=rng.randrange(86_400))
        at = t if rng.random() > 0.03 else t - timedelta(days=rng.uniform(1, 30))  # out of order
        data = _data(rng, kind, ws, owner, at, plan)
        events.append((f"evt_{ws}_{n:03d}", kind, at, {"type": kind, "timestamp": _rfc3339(at), "data": data}))
    return events


def _counts(rng: random.Random, events: int, workspaces: int) -> list[int]:
    """Events per workspace: at least one each, the rest spread unevenly (a long tail), summing to `events`."""
    if events < workspaces:
        raise ValueError("need at least one event per workspace")
    weights = [rng.expovariate(1.0) for _ in range(workspaces)]
    counts = [1] * workspaces
    for i in rng.choices(range(workspaces), weights=weights, k=events - workspaces):
        counts[i] += 1
    return counts


def lifecycle_rows(
    *, events: int, workspaces: int, seed: int, status: str, domains: int = 300, block: int = 5000
) -> Iterator[tuple]:
    """Rows for COPY into events_event (EVENT_COLUMNS), generated lazily.

    Workspaces are generated `block` at a time and their events shuffled within the block, so one
    workspace's rows are spread over the table as they would be when events arrive interleaved.
    """
    mix = Mix(workspaces=workspaces, domains=domains, seed=seed)
    counts = _counts(mix.rng, events, workspaces)
    now = datetime.now(UTC)
    start = now - timedelta(days=400)
    completed = now if status == "completed" else None
    for first in range(0, workspaces, block):
        rows = [
            (
                "provisioning",
                external_id,
                kind,
                at,
                now,
                f"ws_{i:07d}",
                json.dumps(payload),
                status,
                0,
                "",
                "",
                completed,
            )
            for i in range(first, min(first + block, workspaces))
            for external_id, kind, at, payload in _workspace_story(mix, i, counts[i], start)
        ]
        mix.rng.shuffle(rows)
        yield from rows


def domains_of(*, workspaces: int, seed: int, domains: int = 300) -> list[str]:
    """The company domains the generator with these parameters uses (for pre-existing accounts)."""
    return Mix(workspaces=workspaces, domains=domains, seed=seed).domains


def copy_events(dsn: str, rows: Iterator[tuple], *, total: int, label: str, quiet: bool = False) -> int:
    """COPY rows into events_event; return how many. Progress on stderr."""
    progress = Progress(label, total, quiet=quiet)
    n = 0
    columns = ", ".join(EVENT_COLUMNS)
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY events_event ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
                n += 1
                if n % 10_000 == 0:
                    progress.show(n)
        conn.commit()
    progress.show(n, final=True)
    return n


def insert_accounts(dsn: str, domains: list[str]) -> int:
    """Accounts that exist before the backlog (e.g. synced from Salesforce), one per domain."""
    now = datetime.now(UTC)
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO workspaces_account (name, domain, salesforce_id, created_at, updated_at)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (domain) DO NOTHING",
            [(d.split(".")[0].title(), d, f"001{i:015d}", now, now) for i, d in enumerate(domains)],
        )
        conn.commit()
    return len(domains)


def template_url(database_url: str) -> str:
    """The migrated (and loaded) database a benchmark clones each run from: <name>_template."""
    return database_url.rsplit("/", 1)[0] + "/" + db_name(database_url) + "_template"


def clone_database(template: str, target: str) -> None:
    """A fresh copy of the template: CREATE DATABASE … TEMPLATE (seconds, not a migration and reload)."""
    with psycopg.connect(admin_dsn(target), autocommit=True) as conn:
        name, tmpl = sql.Identifier(db_name(target)), sql.Identifier(db_name(template))
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(name, tmpl))


def vacuum_analyze(dsn: str, *tables: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in tables or ("",):
            conn.execute(f"VACUUM (ANALYZE) {table}")


def event_counts(dsn: str) -> dict[str, dict[str, int]]:
    """{type: {status: count}} of events_event."""
    out: dict[str, dict[str, int]] = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        for kind, status, n in conn.execute("SELECT type, status, count(*) FROM events_event GROUP BY 1, 2"):
            out.setdefault(kind, {})[status] = n
    return out


# --- Django child processes ----------------------------------------------------------------------------


# One key for every process of a run: django-q2 signs each task with SECRET_KEY, so a cluster with
# another key than the process that enqueued refuses every task ("Failed to push task to queue").
_SECRET_KEY = "bench-" + os.urandom(24).hex()
_PRIVACY_SALT = "bench-salt-" + os.urandom(16).hex()


def django_env(database_url: str, *, broker: str = "orm", workers: int = 2, log_level: str = "WARNING") -> dict:
    """Production settings (DEBUG off) against the bench database; a developer's .env is not read."""
    return {
        **os.environ,
        "ENV_FILE": "",
        "DEBUG": "0",
        "SECRET_KEY": _SECRET_KEY,
        "PRIVACY_HASH_SALT": _PRIVACY_SALT,  # required by a system check since the privacy app
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "0",
        "DATABASE_URL": database_url,
        "Q_BROKER": broker,
        "Q_WORKERS": str(workers),
        "LOG_LEVEL": log_level,
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }


def django_setup() -> None:
    """In a child started with django_env(): make the project importable and set Django up."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    os.chdir(REPO)
    import django

    django.setup()


def run_child(script: Path, args: list[str], env: dict, *, on_line: Any = None) -> dict:
    """Run `script --child …`; every stdout line is JSON. Progress lines go to on_line; the last line
    (with "result") is returned. stderr passes through."""
    proc = subprocess.Popen(
        [sys.executable, str(script), *args], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True, bufsize=1
    )
    result: dict | None = None
    try:
        for line in proc.stdout:
            message = json.loads(line)
            if "result" in message:
                result = message["result"]
            elif on_line is not None:
                on_line(message)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
    if proc.returncode != 0 or result is None:
        raise RuntimeError(f"{script.name} {' '.join(args)} exited with code {proc.returncode}")
    return result


def emit(message: dict) -> None:
    """Child side of run_child: one JSON line on stdout."""
    sys.stdout.write(json.dumps(message, default=str) + "\n")
    sys.stdout.flush()


def start_qcluster(env: dict, log_path: Path) -> subprocess.Popen:
    """`manage.py qcluster` in its own session (a Ctrl-C reaches only the benchmark, which then stops the
    cluster in order), logging to log_path; returned once it reports running."""
    with log_path.open("w") as log:
        cluster = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"], cwd=REPO, env=env, stdout=log, stderr=log, start_new_session=True
        )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if cluster.poll() is not None:
            raise RuntimeError(f"qcluster exited with code {cluster.returncode}:\n{tail(log_path)}")
        if " running." in log_path.read_text(errors="replace"):
            return cluster
        time.sleep(0.2)
    stop_process(cluster)
    raise RuntimeError(f"qcluster did not report running within 90 s:\n{tail(log_path)}")


def stop_process(proc: subprocess.Popen, timeout: float = 60.0) -> float:
    """SIGTERM, wait (a cluster stops its workers); SIGKILL its process group (it has its own session) if it
    does not stop. How long that took."""
    t0 = time.monotonic()
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            say(f"pid {proc.pid} did not stop within {timeout:.0f} s of SIGTERM; killing its process group")
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    return round(time.monotonic() - t0, 2)


class LiveRun:
    """What a live benchmark (servers, a cluster, databases, the broker) must clean up, whatever happens:
    the processes it started (last first), its databases (unless --keep-database), the Redis database it
    used, its temporary directory (logs kept with --keep-logs). Subclasses name their directory's prefix."""

    prefix = "bench-"

    def __init__(self, args: Any) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix=self.prefix))
        self.procs: list[subprocess.Popen] = []
        self.databases: list[str] = []
        self.redis_used = False

    def cleanup(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                stop_process(proc)
        if not self.args.keep_database:
            for url in self.databases:
                with contextlib.suppress(Exception):
                    drop_database(url)
        if self.redis_used:
            with contextlib.suppress(Exception):
                flush_broker(self.args.redis)
        clean_tmp(self.tmp, keep_logs=self.args.keep_logs)

    def error_logs(self) -> str:
        return "\n".join(f"{path.name}:\n{tail(path)}" for path in sorted(self.tmp.glob("*.log")))


# --- memory, from /proc ------------------------------------------------------------------------------


def proc_status(pid: int | str = "self") -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in kB ({} if it is gone)."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0])
    except OSError:
        return {}
    return out


def proc_pss_kb(pid: int) -> int:
    """Proportional set size in kB: shared pages split between the processes sharing them."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def descendants(root: int) -> list[int]:
    """root and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    out, stack = [], [root]
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack.extend(children.get(pid, []))
    return out


class TreeMemory:
    """Peak memory of a process tree, sampled: per process the highest VmHWM seen (kept after the
    process exits), and the highest total PSS of the tree at any one sample."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.hwm_kb: dict[int, int] = {}
        self.pss_peak_kb = 0
        self.rss_peak_kb = 0

    def sample(self) -> None:
        pss = rss = 0
        for pid in descendants(self.root):
            status = proc_status(pid)
            if status:
                self.hwm_kb[pid] = max(self.hwm_kb.get(pid, 0), status.get("VmHWM", 0))
                rss += status.get("VmRSS", 0)
                pss += proc_pss_kb(pid)
        self.pss_peak_kb = max(self.pss_peak_kb, pss)
        self.rss_peak_kb = max(self.rss_peak_kb, rss)

    def summary(self) -> dict[str, Any]:
        return {
            "processes": len(self.hwm_kb),
            "sum_of_peak_rss_mb": round(sum(self.hwm_kb.values()) / 1024, 1),
            "peak_rss_total_mb": round(self.rss_peak_kb / 1024, 1),
            "peak_pss_total_mb": round(self.pss_peak_kb / 1024, 1),
            "per_process_peak_rss_mb": sorted((round(v / 1024, 1) for v in self.hwm_kb.values()), reverse=True),
        }


# --- event counts, logs ------------------------------------------------------------------------------


def start_conditions(wait_others: float, *, pattern: str = OTHER_BENCHMARKS) -> dict[str, Any]:
    """What a run starts under, for its report: after waiting up to `wait_others` seconds for the other
    benchmarks `pattern` names to end, the machine and how busy it already is."""
    return {
        "waited_for_other_benchmarks": wait_for_other_benchmarks(wait_others, pattern=pattern),
        "machine_before": machine_info(),
        "background_busy_pct": background_busy_pct(),
    }


def type_mix(counts: dict[str, dict[str, int]]) -> dict[str, int]:
    return dict(Counter({kind: sum(by_status.values()) for kind, by_status in counts.items()}))


def log_level(line: str) -> str:
    """The level of one engine log line, in either LOG_FORMAT (json: the production default; plain)."""
    if line.startswith("{"):
        with contextlib.suppress(ValueError):
            return str(json.loads(line).get("level", ""))
    parts = line.split(" ", 3)
    return parts[2] if len(parts) > 2 else ""
