#!/usr/bin/env python
"""Ingest benchmark of the signed provisioning webhook (CONTRACT §2).

Phases, each on a freshly truncated `events_event` table of a throw-away PostgreSQL database:

1. raw      — the baseline: K concurrent psycopg connections, one `INSERT` + commit per row
              (autocommit), of the same rows the engine stores.
2. engine   — N signed webhooks at a real server (gunicorn gthread as deployed; --server picks gunicorn
              sync or granian to compare), K concurrent keep-alive clients, closed loop. Every answer
              must be 202 and every event must be a row.
3. paced    — an open-loop schedule at a fixed rate: request i is due at t0 + i/rate and its
              latency counts from that due time, so a slow server cannot hide its queueing
              (no coordinated omission).
4. batch    — the same kind of events in signed batches of --batch-size (CONTRACT §2b) at the server,
              against its baseline `copy`: one COPY of exactly those rows. Every answer must be 202 with
              every event accepted, and every event exactly one row.
5. ceiling  — the engine phase again at a server whose webhook stores nothing (bench/ingest_ceiling.py):
              everything else a single event costs, so its rate over the raw inserts is the most engine ÷ raw
              can be on this machine. No target: it says how much of the request the store is.

The figures, parameters, targets and pass/fail go to bench/results/ingest.json. See bench/README.md.
The client never imports Django: requests are built and signed with `standardwebhooks` up front.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import json
import math
import multiprocessing as mp
import os
import queue
import random
import resource
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import scaffold
from psycopg import sql
from scaffold import REPO, Progress, db_name, machine_info, say, tail
from standardwebhooks.webhooks import Webhook

WEBHOOK_PATH = "/webhooks/provisioning/"
BATCH_PATH = "/webhooks/provisioning/batch/"
TARGET_BATCH_RATIO = 0.10
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/lifecycle_bench"
DEFAULT_BROKER = "redis://127.0.0.1:6379/15"
QUEUE_KEY = "django_q:lifecycle:q"  # django-q2's Redis list for the cluster named "lifecycle"

TARGET_RATIO = 0.30
TARGET_PACED_P99_MS = 50.0

# The rows the engine writes (events/store.py), so the baseline inserts exactly the same thing.
RAW_INSERT = (
    "INSERT INTO events_event (source, external_id, type, occurred_at, received_at, workspace_key,"
    " payload, status, retry_count, notes, lease_owner)"
    " VALUES ('provisioning', %s, %s, %s, now(), %s, %s::jsonb, 'new', 0, '', '')"
)

# A product's lifecycle stream is mostly usage, with the occasional trial, conversion and churn.
EVENT_MIX = (
    ("usage.recorded", 0.70),
    ("trial.started", 0.15),
    ("subscription.converted", 0.10),
    ("workspace.churned", 0.05),
)
FEATURES = ("reports", "dashboards", "exports", "api", "alerts", "sso", "imports", "search")
PLANS = (("starter", "49.00"), ("team", "297.00"), ("business", "990.00"))
REASONS = ("too_expensive", "missing_feature", "switched_competitor", "no_longer_needed", "")


# --- payloads -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchEvent:
    msg_id: str
    type: str
    occurred_at: datetime
    workspace_id: str
    body: str


def _data(rng: random.Random, kind: str, ws: str, at: datetime) -> dict[str, Any]:
    email = f"owner{ws[3:]}@customer{int(ws[3:]) % 997}.example.com"
    if kind == "trial.started":
        return {
            "workspace_id": ws,
            "email": email,
            "workspace_name": f"Workspace {ws}",
            "first_name": "Dana",
            "last_name": f"Lee{ws[3:]}",
            "company": f"Customer {int(ws[3:]) % 997}",
            "plan": "trial",
            "trial_expires_at": _rfc3339(at + timedelta(days=14)),
        }
    if kind == "subscription.converted":
        plan, mrr = rng.choice(PLANS)
        return {
            "workspace_id": ws,
            "email": email,
            "plan": plan,
            "mrr": mrr,
            "currency": "USD",
            "subscription_id": f"sub_{rng.getrandbits(48):012x}",
            "billing_interval": rng.choice(("month", "year")),
        }
    if kind == "workspace.churned":
        return {"workspace_id": ws, "email": email, "churned_at": _rfc3339(at), "reason": rng.choice(REASONS)}
    return {
        "workspace_id": ws,
        "feature": rng.choice(FEATURES),
        "user_email": f"user{rng.randrange(20)}.{ws}@customer{int(ws[3:]) % 997}.example.com",
        "count": rng.randint(1, 50),
        "duration_seconds": round(rng.uniform(0.1, 900.0), 2),
        "product": "web",
        "outcome": "success" if rng.random() < 0.97 else "error",
    }


def _rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def make_events(n: int, *, prefix: str, seed: int) -> list[BenchEvent]:
    """n events over n/8 workspaces in the CONTRACT §2 shapes, each with a unique webhook-id."""
    rng = random.Random(seed)
    kinds, weights = zip(*EVENT_MIX, strict=True)
    workspaces = max(1, n // 8)
    start = datetime.now(UTC) - timedelta(days=1)
    events = []
    for i in range(n):
        kind = rng.choices(kinds, weights)[0]
        ws = f"ws_{rng.randrange(workspaces):06d}"
        at = start + timedelta(seconds=rng.uniform(0, 86_400))
        body = json.dumps({"type": kind, "timestamp": _rfc3339(at), "data": _data(rng, kind, ws, at)})
        events.append(BenchEvent(f"msg_{prefix}_{i:08d}", kind, at, ws, body))
    return events


def sign_requests(events: list[BenchEvent], secret: str) -> list[tuple[bytes, dict[str, str]]]:
    """Body and headers of every request, signed now (the server accepts ±300 s)."""
    signer = Webhook(secret)
    now = datetime.now(UTC)
    stamp = str(int(now.timestamp()))
    return [
        (
            ev.body.encode(),
            {
                "Content-Type": "application/json",
                "webhook-id": ev.msg_id,
                "webhook-timestamp": stamp,
                "webhook-signature": signer.sign(ev.msg_id, now, ev.body),
            },
        )
        for ev in events
    ]


def sign_batches(events: list[BenchEvent], secret: str, size: int) -> list[tuple[bytes, dict[str, str]]]:
    """The events in signed batches of `size` (CONTRACT §2b): each event keeps its webhook-id as its `id`."""
    signer = Webhook(secret)
    now = datetime.now(UTC)
    stamp = str(int(now.timestamp()))
    requests = []
    for start in range(0, len(events), size):
        chunk = events[start : start + size]
        body = '{"events": [' + ", ".join('{"id": "' + ev.msg_id + '", ' + ev.body[1:] for ev in chunk) + "]}"
        batch_id = f"batch_{chunk[0].msg_id}"
        headers = {
            "Content-Type": "application/json",
            "webhook-id": batch_id,
            "webhook-timestamp": stamp,
            "webhook-signature": signer.sign(batch_id, now, body),
        }
        requests.append((body.encode(), headers))
    return requests


COPY_COLUMNS = (
    "COPY events_event (source, external_id, type, occurred_at, received_at, workspace_key, payload, status,"
    " retry_count, notes, lease_owner, suppressed) FROM STDIN"
)


def copy_rows(database_url: str, events: list[BenchEvent]) -> dict[str, Any]:
    """The batch phase's baseline: one COPY of exactly the rows its events become, in one transaction."""
    now = datetime.now(UTC)
    with psycopg.connect(libpq_dsn(database_url)) as conn:
        started = time.perf_counter()
        with conn.cursor() as cursor, cursor.copy(COPY_COLUMNS) as copy:
            for ev in events:
                copy.write_row(
                    ("provisioning", ev.msg_id, ev.type, ev.occurred_at, now, ev.workspace_id, ev.body, "new", 0,
                     "", "", False)
                )  # fmt: skip
        conn.commit()
        seconds = time.perf_counter() - started
    return {"rows": len(events), "seconds": round(seconds, 3), "per_second": round(len(events) / seconds, 1)}


def sql_rows(events: list[BenchEvent]) -> list[tuple[Any, ...]]:
    return [(ev.msg_id, ev.type, ev.occurred_at, ev.workspace_id, ev.body) for ev in events]


# --- load generator (client processes; no Django here) --------------------------------------------


class HttpSender:
    """One persistent keep-alive connection speaking plain HTTP/1.1; send() answers the HTTP status as a string.

    The load generator shares the machine's two cores with the server under test, so it is kept lean: the
    request is one sendall of bytes joined here, and the answer is read by its Content-Length, without
    http.client's header parsing (which cost the client about 250 µs of CPU a request, most of what it spent).
    """

    path = WEBHOOK_PATH

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self.address = (host, int(port))
        self.head = f"POST {self.path} HTTP/1.1\r\nHost: {target}\r\n".encode()
        self.sock: socket.socket | None = None
        self.buffer = b""
        self._connect()

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(self.address, timeout=60)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock, self.buffer = sock, b""
        return sock

    def send(self, item: tuple[bytes, dict[str, str]]) -> str:
        return str(self.exchange(item)[0])

    def exchange(self, item: tuple[bytes, dict[str, str]]) -> tuple[int, bytes]:
        """Send one request and read its whole answer: (status, body)."""
        body, headers = item
        sock = self.sock or self._connect()
        fields = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        sock.sendall(b"".join((self.head, fields.encode(), b"Content-Length: %d\r\n\r\n" % len(body), body)))
        return self._answer()

    def _answer(self) -> tuple[int, bytes]:
        data = self.buffer
        while (end := data.find(b"\r\n\r\n")) < 0:
            data += self._receive()
        status_line, *fields = data[:end].decode("latin-1").split("\r\n")
        status, length, close, chunked = int(status_line.split(" ", 2)[1]), None, False, False
        for field in fields:
            name, _, value = field.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection":
                close = value.strip().lower() == "close"
            elif name == "transfer-encoding":
                chunked = value.strip().lower() == "chunked"
        rest = data[end + 4 :]
        if chunked:
            body, rest = self._chunks(rest)
        elif length is None:
            raise RuntimeError("an answer with neither Content-Length nor chunks")
        else:
            while len(rest) < length:
                rest += self._receive()
            body, rest = rest[:length], rest[length:]
        self.buffer = rest
        if close:
            self.reset()
        return status, body

    def _chunks(self, data: bytes) -> tuple[bytes, bytes]:
        """A chunked body from `data` on (reading more as needed): (body, what follows it)."""
        parts = []
        while True:
            while (eol := data.find(b"\r\n")) < 0:
                data += self._receive()
            size = int(data[:eol].split(b";")[0], 16)
            while len(data) < eol + 2 + size + 2:
                data += self._receive()
            if size == 0:  # no trailers from the servers measured here
                return b"".join(parts), data[eol + 4 :]
            parts.append(data[eol + 2 : eol + 2 + size])
            data = data[eol + 2 + size + 2 :]

    def _receive(self) -> bytes:
        assert self.sock is not None
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        return chunk

    def reset(self) -> None:
        """Drop the connection (after an error or a `Connection: close`); the next send opens a new one."""
        if self.sock is not None:
            self.sock.close()
        self.sock, self.buffer = None, b""

    def close(self) -> None:
        self.reset()


class SqlSender:
    """One autocommit psycopg connection: every row is its own INSERT and its own commit."""

    def __init__(self, target: str) -> None:
        self.conn = psycopg.connect(target, autocommit=True)

    def send(self, row: tuple[Any, ...]) -> str:
        self.conn.execute(RAW_INSERT, row)
        return "ok"

    def reset(self) -> None:
        if self.conn.broken:
            self.conn = psycopg.connect(self.conn.info.dsn, autocommit=True)

    def close(self) -> None:
        self.conn.close()


class BatchSender(HttpSender):
    """As HttpSender, to the batch endpoint; a 202 counts only if every event of the batch was accepted."""

    path = BATCH_PATH

    def send(self, item: tuple[bytes, dict[str, str]]) -> str:
        status, answer = self.exchange(item)
        if status == 202:
            counts = json.loads(answer)
            if counts["duplicates"] or counts["ignored"] or counts["rejected"]:
                return "202-not-all-accepted"
        return str(status)


SENDERS = {"http": HttpSender, "sql": SqlSender, "batch": BatchSender}


@dataclass
class Phase:
    name: str
    kind: str  # "http" or "sql"
    target: str  # host:port or a libpq DSN
    items: list[Any]
    concurrency: int
    processes: int
    rate: float | None = None  # requests/s for an open-loop schedule; None for closed loop
    expected: str = "202"


def _client_process(phase: Phase, proc: int, threads: int, channels: dict[str, Any]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    shared_next = channels["next"]  # one queue of work for every connection of every process
    latency: list[float] = []
    lag: list[float] = []
    status = [Counter() for _ in range(threads)]  # per thread: += on a shared Counter is not atomic
    done = [0] * threads
    ends = [0.0] * threads
    errors: list[str] = []
    senders = [SENDERS[phase.kind](phase.target) for _ in range(threads)]
    channels["ready"].put(proc)
    channels["go"].wait()
    t0 = channels["t0"].value
    cpu0 = _own_cpu()

    def take() -> int:
        with shared_next.get_lock():
            shared_next.value += 1
            return shared_next.value - 1

    def work(tid: int) -> None:
        sender = senders[tid]
        while (i := take()) < len(phase.items):
            due = time.monotonic() if phase.rate is None else t0 + i / phase.rate
            if (wait := due - time.monotonic()) > 0:
                time.sleep(wait)
            sent = time.monotonic()
            try:
                outcome = sender.send(phase.items[i])
            except Exception as exc:  # a failed request is a result, not a crash
                outcome = type(exc).__name__
                if len(errors) < 5:
                    errors.append(repr(exc))
                sender.reset()
            ends[tid] = time.monotonic()
            latency.append(ends[tid] - due)  # list.append is atomic under the GIL
            lag.append(sent - due)
            status[tid][outcome] += 1
            done[tid] += 1

    workers = [threading.Thread(target=work, args=(tid,), daemon=True) for tid in range(threads)]
    for worker in workers:
        worker.start()
    while any(worker.is_alive() for worker in workers):
        channels["progress"][proc] = sum(done)
        time.sleep(0.2)
    channels["progress"][proc] = sum(done)
    cpu = _own_cpu() - cpu0
    for sender in senders:
        sender.close()
    channels["results"].put(
        {
            "latency": latency,
            "lag": lag,
            "status": sum(status, Counter()),
            "last_end": max(ends),
            "errors": errors,
            "cpu_seconds": cpu,
        }
    )


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_phase(phase: Phase, *, cpu_roots: dict[str, int], quiet: bool = False) -> dict[str, Any]:
    """Run one phase with `phase.processes` client processes; return its figures."""
    ctx = mp.get_context("fork")  # children inherit the pre-signed requests without pickling them
    processes = min(phase.processes, phase.concurrency)
    phase.processes = processes
    channels = {
        "ready": ctx.Queue(),
        "results": ctx.Queue(),
        "go": ctx.Event(),
        "t0": ctx.Value("d", 0.0, lock=False),
        "next": ctx.Value("q", 0),
        "progress": ctx.Array("q", processes, lock=False),
    }
    split = [phase.concurrency // processes + (p < phase.concurrency % processes) for p in range(processes)]
    procs = [
        ctx.Process(target=_client_process, args=(phase, p, split[p], channels), daemon=True) for p in range(processes)
    ]
    try:
        for proc in procs:
            proc.start()
        for _ in procs:
            channels["ready"].get(timeout=120)
        cpu_before = cpu_snapshot(cpu_roots)
        parent_cpu0 = _own_cpu()
        t0 = time.monotonic() + 0.1
        channels["t0"].value = t0
        channels["go"].set()
        results = _collect(phase, procs, channels, t0, quiet=quiet)
        for proc in procs:
            proc.join(timeout=30)
        time.sleep(0.3)  # let the postmaster reap the baseline's backends, so their CPU is counted
        cpu = cpu_delta(cpu_before, cpu_snapshot(cpu_roots))
        cpu["client"] = sum(r["cpu_seconds"] for r in results) + _own_cpu() - parent_cpu0
        groups = [k for k in cpu if k not in (*NOT_CPU, "machine") and not k.endswith("_sys")]
        cpu["other"] = cpu["machine"] - sum(cpu[k] for k in groups)  # e.g. someone else's tests
        cpu["other_pct_of_machine"] = 100 * cpu["other"] / max(cpu["machine"], 1e-9)  # > ~10 %: noisy run
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
    return _summarise(phase, results, t0, cpu)


def _collect(phase: Phase, procs: list, channels: dict[str, Any], t0: float, *, quiet: bool) -> list[dict]:
    results: list[dict] = []
    total = len(phase.items)
    progress = Progress(phase.name, total, quiet=quiet)
    progress.restart(t0)
    while len(results) < len(procs):
        with contextlib.suppress(queue.Empty):
            results.append(channels["results"].get(timeout=0.25))
            continue
        if not any(proc.is_alive() for proc in procs) and channels["results"].empty():
            raise RuntimeError(f"{phase.name}: a client process died without reporting")
        progress.show(sum(channels["progress"]))
    progress.show(total, final=True)
    return results


def _summarise(phase: Phase, results: list[dict], t0: float, cpu: dict[str, float]) -> dict[str, Any]:
    latency = sorted(x for r in results for x in r["latency"])
    statuses: Counter = sum((r["status"] for r in results), Counter())
    wall = max(r["last_end"] for r in results) - t0
    n = len(phase.items)
    out: dict[str, Any] = {
        "requests": n,
        "concurrency": phase.concurrency,
        "client_processes": phase.processes,
        "seconds": round(wall, 3),
        "per_second": round(n / wall, 1),
        "latency_ms": latency_stats(latency),
        "statuses": dict(statuses),
        "all_expected": statuses.get(phase.expected, 0) == n,
        "errors": [e for r in results for e in r["errors"]][:5],
        "cpu_seconds": {k: round(v, 2) for k, v in cpu.items()},
        "cpu_us_per_request": {k: round(1e6 * v / n) for k, v in cpu.items() if k not in NOT_CPU},
    }
    if phase.rate:
        lag = sorted(x for r in results for x in r["lag"])
        out["rate_target"] = phase.rate
        out["send_lag_ms"] = latency_stats(lag)  # how late the client sent; must stay small
    return out


def latency_stats(values: list[float]) -> dict[str, float]:
    """Percentiles (nearest rank) in milliseconds of already sorted seconds."""
    if not values:
        return {}

    def pct(q: float) -> float:
        return round(1000 * values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))], 2)

    return {
        "p50": pct(0.50),
        "p90": pct(0.90),
        "p99": pct(0.99),
        "p999": pct(0.999),
        "max": round(1000 * values[-1], 2),
        "mean": round(1000 * sum(values) / len(values), 2),
    }


# --- where the CPU goes (this machine: client, gunicorn, PostgreSQL and Redis share 2 cores) -------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
NOT_CPU = ("cores", "machine_busy_pct", "other_pct_of_machine")
QUIET_BUSY_PCT = 20.0
SHOWN_CPU = ("client", "gunicorn", "granian", "postgres", "redis", "other", "machine")


def _processes() -> dict[int, tuple[str, int, float, float]]:
    """pid -> (command, parent pid, user and system CPU seconds of itself plus its reaped children)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        comm, rest = raw[raw.index("(") + 1 : raw.rindex(")")], raw[raw.rindex(")") + 2 :].split()
        utime, stime, cutime, cstime = (int(x) for x in rest[11:15])
        table[int(entry.name)] = (comm, int(rest[1]), (utime + cutime) / CLOCK_TICKS, (stime + cstime) / CLOCK_TICKS)
    return table


def find_cpu_roots(server_pid: int | None = None, server: str = "gunicorn") -> dict[str, int]:
    """The process trees to account: the local postmaster, redis-server and the server under test (its master)."""
    table = _processes()
    roots = {}
    for pid, (comm, ppid, *_) in table.items():
        if comm == "postgres" and table.get(ppid, ("",))[0] != "postgres":
            roots.setdefault("postgres", pid)
        elif comm.startswith("redis-server"):
            roots.setdefault("redis", pid)
    if server_pid:
        roots[server] = server_pid
    return roots


def cpu_snapshot(roots: dict[str, int]) -> dict[str, float]:
    table = _processes()
    children: dict[int, list[int]] = {}
    for pid, (_, ppid, *_) in table.items():
        children.setdefault(ppid, []).append(pid)
    snap = {}
    for name, root in roots.items():
        stack, user, system = [root], 0.0, 0.0
        while stack:
            pid = stack.pop()
            _, _, u, k = table.get(pid, ("", 0, 0.0, 0.0))
            user, system = user + u, system + k
            stack.extend(children.get(pid, []))
        snap[name], snap[f"{name}_sys"] = user + system, system
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:9]
    ticks = [int(x) for x in fields]
    snap["machine"] = (sum(ticks) - ticks[3] - ticks[4]) / CLOCK_TICKS  # all but idle and iowait
    snap["wall"] = time.monotonic()
    return snap


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    delta = {k: after[k] - before[k] for k in before if k in after}
    wall = delta.pop("wall")
    delta["cores"] = os.cpu_count() or 1
    delta["machine_busy_pct"] = 100 * delta["machine"] / (wall * delta["cores"])
    return delta


def background_busy_pct(seconds: float = 2.0) -> float:
    """How busy the machine is before we start: other work on these 2 cores skews every figure."""
    before = cpu_snapshot({})
    time.sleep(seconds)
    delta = cpu_delta(before, cpu_snapshot({}))
    return round(delta["machine_busy_pct"], 1)


def wait_until_quiet(limit: float, *, busy_pct: float = QUIET_BUSY_PCT) -> float:
    """Wait up to `limit` seconds for the machine to be idle enough; return the last busy figure."""
    deadline = time.monotonic() + limit
    while (busy := background_busy_pct()) > busy_pct and time.monotonic() < deadline:
        say(f"machine {busy}% busy before the start; waiting for it to quiet down")
    return busy


# --- database, broker and server ----------------------------------------------------------------------


def admin_dsn(database_url: str) -> str:
    """The same server's maintenance database, to create and drop the bench database."""
    parts = urlsplit(database_url)
    return urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))


def libpq_dsn(database_url: str) -> str:
    return urlunsplit(urlsplit(database_url)._replace(scheme="postgresql"))


def recreate_database(database_url: str) -> None:
    with psycopg.connect(admin_dsn(database_url), autocommit=True) as conn:
        name = sql.Identifier(db_name(database_url))
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(name))


def drop_database(database_url: str) -> None:
    with psycopg.connect(admin_dsn(database_url), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db_name(database_url))))


def truncate_events(database_url: str) -> None:
    with psycopg.connect(libpq_dsn(database_url), autocommit=True) as conn:
        # CASCADE: the review queue's many-to-many table points at events.
        conn.execute("TRUNCATE events_event RESTART IDENTITY CASCADE")


def count_events(database_url: str) -> tuple[int, int]:
    """Rows in events_event, and how many transactions wrote them (distinct xmin): commits."""
    with psycopg.connect(libpq_dsn(database_url), autocommit=True) as conn:
        return conn.execute("SELECT count(*), count(DISTINCT xmin::text) FROM events_event").fetchone()


def server_info(database_url: str) -> dict[str, str]:
    with psycopg.connect(libpq_dsn(database_url), autocommit=True) as conn:
        settings = ("server_version", "synchronous_commit", "fsync", "wal_sync_method", "commit_delay")
        return {name: conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()[0] for name in settings}


def enqueued_tasks(broker: str, database_url: str) -> int:
    """Tasks waiting in the broker: the engine enqueues one per commit that stored new events."""
    if broker == "orm":
        with psycopg.connect(libpq_dsn(database_url), autocommit=True) as conn:
            return conn.execute("SELECT count(*) FROM django_q_ormq").fetchone()[0]
    import redis

    with contextlib.closing(redis.Redis.from_url(broker)) as client:
        return int(client.llen(QUEUE_KEY))


def flush_broker(broker: str) -> None:
    if broker == "orm":
        return  # the ORM queue lives in the bench database, dropped with it
    import redis

    with contextlib.closing(redis.Redis.from_url(broker)) as client:
        client.flushdb()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(args: argparse.Namespace, secret: str) -> dict[str, str]:
    env = {
        **os.environ,
        "ENV_FILE": "",  # a developer's .env must not change what is measured
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(40),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "0",
        "PROVISIONING_WEBHOOK_SECRET": secret,
        "DATABASE_URL": args.database_url,
        "Q_BROKER": args.broker,
        "LOG_LEVEL": "WARNING",
        # Required by a system check since the privacy app (migrate refuses to run without it).
        "PRIVACY_HASH_SALT": "bench-salt-" + secrets.token_hex(16),
    }
    for pair in args.server_env:
        key, _, value = pair.partition("=")
        env[key] = value
    return env


def migrate(env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"],
        cwd=REPO, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:  # system-check warnings are expected; show them only on failure
        raise RuntimeError(f"migrate failed:\n{done.stdout}{done.stderr}")


#: The WSGI servers the engine phases can run on (--server); `gthread` is what deploy/gunicorn.conf.py runs.
SERVERS = ("gthread", "sync", "granian")


#: The WSGI application of the engine phases, and the one of the ceiling phase (bench/ingest_ceiling.py).
ENGINE_APP, CEILING_APP = "config.wsgi:application", "ingest_ceiling:application"


def server_command(args: argparse.Namespace, port: int, app: str = ENGINE_APP) -> list[str]:
    """The command line of the server under test: gunicorn (gthread or sync workers) or granian (WSGI)."""
    if args.server == "granian":
        return [
            sys.executable, "-m", "granian", "--interface", "wsgi", app,
            "--workers", str(args.workers),
            "--blocking-threads", str(args.threads),
            "--host", "127.0.0.1", "--port", str(port),
            "--backlog", "2048",
            "--log-level", "warning", "--no-ws",
            *args.gunicorn_arg,
        ]  # fmt: skip
    threads = ["--threads", str(args.threads)] if args.server == "gthread" else []
    return [
        sys.executable, "-m", "gunicorn", app,
        "--worker-class", args.server,
        "--workers", str(args.workers),
        *threads,
        "--bind", f"127.0.0.1:{port}",
        "--keep-alive", "75",
        "--backlog", "2048",
        "--log-level", "warning",
        *args.gunicorn_arg,
    ]  # fmt: skip


def start_gunicorn(
    args: argparse.Namespace, env: dict[str, str], port: int, log: Any, app: str = ENGINE_APP
) -> subprocess.Popen:
    """Start the server under test (--server). Its own session: a Ctrl-C reaches only this script, which then
    stops the server in order. The ceiling's application is found beside this script."""
    if app != ENGINE_APP:
        env = {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parent), env.get("PYTHONPATH")]))}
    return subprocess.Popen(
        server_command(args, port, app), cwd=REPO, env=env, stdout=log, stderr=log, start_new_session=True
    )


def wait_ready(server: subprocess.Popen, port: int, timeout: float = 60.0) -> None:
    """Poll until every worker can answer: a GET to the webhook is a quick 405 once Django is loaded."""
    deadline = time.monotonic() + timeout
    answered = 0
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"gunicorn exited with code {server.returncode} while starting")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", WEBHOOK_PATH)
            status = conn.getresponse().status
            conn.close()
        except OSError:
            time.sleep(0.2)
            continue
        if status != 405:
            raise RuntimeError(f"the server answered {status} to a GET of {WEBHOOK_PATH}; expected 405")
        answered += 1
        if answered >= 4:
            return
    raise RuntimeError(f"gunicorn was not ready within {timeout:.0f} s")


def stop_gunicorn(server: subprocess.Popen) -> None:
    if server.poll() is not None:
        return
    server.terminate()
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=5)


# --- the benchmark ------------------------------------------------------------------------------------


class Run:
    """Holds what must be cleaned up, whatever happens."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.server: subprocess.Popen | None = None
        self.database_created = False
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed in cleanup)
            mode="w+", prefix="ingest-gunicorn-", suffix=".log", delete=False
        )

    def cleanup(self) -> None:
        if self.server is not None:
            stop_gunicorn(self.server)
        if self.database_created and not self.args.keep_database:
            drop_database(self.args.database_url)
        if self.server is not None:  # only a server this run started has put tasks in the broker
            flush_broker(self.args.broker)
        self.log.close()
        with contextlib.suppress(OSError):
            os.unlink(self.log.name)

    def error_logs(self) -> str:
        if self.server is None:
            return ""
        self.log.flush()
        return "gunicorn log (last lines):\n" + tail(self.log.name, 30)


def phase_http(args: argparse.Namespace, name: str, reqs: list, port: int, **kw: Any) -> Phase:
    return Phase(name, "http", f"127.0.0.1:{port}", reqs, processes=args.client_processes, **kw)


def run_engine_phase(run: Run, phase: Phase, roots: dict[str, int]) -> dict[str, Any]:
    args = run.args
    tasks_before = enqueued_tasks(args.broker, args.database_url)
    result = run_phase(phase, cpu_roots=roots, quiet=args.no_progress)
    result["rows_stored"], result["commits"] = count_events(args.database_url)
    result["no_loss"] = result["rows_stored"] == len(phase.items)
    result["events_per_commit"] = round(result["rows_stored"] / max(1, result["commits"]), 2)
    result["enqueued_tasks"] = enqueued_tasks(args.broker, args.database_url) - tasks_before
    return result


def serve_warm(run: Run, env: dict[str, str], secret: str, app: str) -> tuple[int, dict[str, int]]:
    """Start the server under test with `app` on a free port (`run.server`), wait until it answers, send the
    warm-up; its port and the CPU roots to measure."""
    args = run.args
    port = free_port()
    run.server = start_gunicorn(args, env, port, run.log, app)
    wait_ready(run.server, port)
    roots = find_cpu_roots(run.server.pid, "granian" if args.server == "granian" else "gunicorn")
    warmup = sign_requests(make_events(args.warmup, prefix=f"warm-{app.partition(':')[0]}", seed=args.seed + 1), secret)
    run_phase(phase_http(args, "warm-up", warmup, port, concurrency=args.concurrency), cpu_roots=roots)
    return port, roots


def benchmark(run: Run) -> dict[str, Any]:
    args = run.args
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    env = server_env(args, secret)
    phases = set(args.phases)
    report: dict[str, Any] = {"machine": machine_info()}

    report["background_busy_pct"] = wait_until_quiet(args.wait_quiet)
    if report["background_busy_pct"] > QUIET_BUSY_PCT:
        say(f"warning: the machine is already {report['background_busy_pct']}% busy; figures will be low")
    recreate_database(args.database_url)
    run.database_created = True
    say("migrating the bench database")
    migrate(env)
    report["postgres"] = server_info(args.database_url)
    events = make_events(args.events, prefix="main", seed=args.seed)
    roots = find_cpu_roots()

    if "raw" in phases:
        rows = sql_rows(events)
        raw = Phase("raw", "sql", libpq_dsn(args.database_url), rows, args.concurrency, args.client_processes)
        raw.expected = "ok"
        report["raw"] = run_phase(raw, cpu_roots=roots, quiet=args.no_progress)
        report["raw"]["rows_stored"], report["raw"]["commits"] = count_events(args.database_url)
        truncate_events(args.database_url)

    if phases & {"engine", "paced", "batch"}:
        say(f"starting {args.server} (-w {args.workers} --threads {args.threads})")
        port, roots = serve_warm(run, env, secret, ENGINE_APP)
        truncate_events(args.database_url)

        if "engine" in phases:
            reqs = sign_requests(events, secret)  # signed just before the clock starts
            phase = phase_http(args, "engine", reqs, port, concurrency=args.concurrency)
            report["engine"] = run_engine_phase(run, phase, roots)
            truncate_events(args.database_url)

        if "paced" in phases:
            n = int(args.rate * args.paced_seconds)
            reqs = sign_requests(make_events(n, prefix="paced", seed=args.seed + 2), secret)
            phase = phase_http(args, "paced", reqs, port, concurrency=args.paced_concurrency, rate=args.rate)
            report["paced"] = run_engine_phase(run, phase, roots)
            report["paced"]["achieved_rate"] = report["paced"].pop("per_second")
            truncate_events(args.database_url)

        if "batch" in phases:
            batch_events = make_events(args.batch_events, prefix="batch", seed=args.seed + 3)
            report["copy"] = copy_rows(args.database_url, batch_events)
            truncate_events(args.database_url)
            reqs = sign_batches(batch_events, secret, args.batch_size)
            phase = Phase("batch", "batch", f"127.0.0.1:{port}", reqs, args.batch_concurrency, args.client_processes)
            result = run_engine_phase(run, phase, roots)
            result["no_loss"] = result["rows_stored"] == len(batch_events)
            result["batch_size"] = args.batch_size
            result["events"] = len(batch_events)
            result["events_per_second"] = round(len(batch_events) / result["seconds"], 1)
            report["batch"] = result

    if "ceiling" in phases:
        if run.server is not None:
            stop_gunicorn(run.server)
        say(f"starting {args.server} with the store left out (bench/ingest_ceiling.py)")
        port, roots = serve_warm(run, env, secret, CEILING_APP)
        reqs = sign_requests(make_events(args.events, prefix="ceiling", seed=args.seed), secret)
        report["ceiling"] = run_phase(
            phase_http(args, "ceiling", reqs, port, concurrency=args.concurrency),
            cpu_roots=roots,
            quiet=args.no_progress,
        )
        report["ceiling"]["rows_stored"] = count_events(args.database_url)[0]  # none: nothing is stored
    return report


def judge(report: dict[str, Any]) -> dict[str, Any]:
    targets: dict[str, Any] = {}
    if "raw" in report and "engine" in report:
        ratio = report["engine"]["per_second"] / report["raw"]["per_second"]
        report["ratio_engine_to_raw"] = round(ratio, 3)
        targets["ratio_engine_to_raw"] = {"target": f">= {TARGET_RATIO}", "value": round(ratio, 3),
                                          "pass": ratio >= TARGET_RATIO}  # fmt: skip
    if "raw" in report and "ceiling" in report:  # no target: how much of the request the store is
        report["ratio_ceiling_to_raw"] = round(report["ceiling"]["per_second"] / report["raw"]["per_second"], 3)
    if "paced" in report:
        p99 = report["paced"]["latency_ms"]["p99"]
        targets["paced_p99_ms"] = {"target": f"<= {TARGET_PACED_P99_MS}", "value": p99,
                                   "pass": p99 <= TARGET_PACED_P99_MS}  # fmt: skip
        achieved, wanted = report["paced"]["achieved_rate"], report["paced"]["rate_target"]
        targets["paced_rate"] = {"target": f">= {0.98 * wanted:.0f} (98% of {wanted:.0f}/s)", "value": achieved,
                                 "pass": achieved >= 0.98 * wanted}  # fmt: skip
    if "batch" in report and "copy" in report:
        ratio = report["batch"]["events_per_second"] / report["copy"]["per_second"]
        report["ratio_batch_to_copy"] = round(ratio, 3)
        targets["ratio_batch_to_copy"] = {"target": f">= {TARGET_BATCH_RATIO}", "value": round(ratio, 3),
                                          "pass": ratio >= TARGET_BATCH_RATIO}  # fmt: skip
    for name in ("engine", "paced", "batch"):
        if name in report:
            ok = report[name]["all_expected"] and report[name]["no_loss"]
            targets[f"{name}_all_202_no_loss"] = {"target": "every answer 202, rows == events",
                                                  "value": report[name]["rows_stored"], "pass": ok}  # fmt: skip
    return targets


def print_summary(report: dict[str, Any], targets: dict[str, Any]) -> None:
    def line(label: str, r: dict[str, Any], unit: str) -> str:
        lat = r["latency_ms"]
        rate = r.get("per_second", r.get("achieved_rate"))
        return (
            f"{label:<22} {r['requests']:>7} {unit} in {r['seconds']:6.2f} s = {rate:8.1f}/s   "
            f"p50 {lat['p50']:6.2f} ms  p99 {lat['p99']:7.2f} ms  max {lat['max']:7.1f} ms"
        )

    print()
    if "raw" in report:
        print(line("raw psycopg inserts", report["raw"], "rows  "))
    if "engine" in report:
        e = report["engine"]
        print(line("engine (webhook)", e, "events"))
        print(f"{'':<22} statuses {e['statuses']}, rows stored {e['rows_stored']}, "
              f"{e['events_per_commit']} events/commit")  # fmt: skip
    if "ratio_engine_to_raw" in report:
        print(f"{'ratio engine/raw':<22} {report['ratio_engine_to_raw']:.3f}  (target >= {TARGET_RATIO})")
    if "paced" in report:
        p = report["paced"]
        print(line(f"paced @ {p['rate_target']:.0f}/s", p, "events"))
        print(f"{'':<22} statuses {p['statuses']}, rows stored {p['rows_stored']}, "
              f"client send lag p99 {p['send_lag_ms']['p99']} ms")  # fmt: skip
    if "batch" in report:
        b, c = report["batch"], report["copy"]
        print(f"{'COPY of the rows':<22} {c['rows']:>7} rows   in {c['seconds']:6.2f} s = {c['per_second']:8.1f}/s")
        print(f"{'batches of ' + str(b['batch_size']):<22} {b['events']:>7} events in {b['seconds']:6.2f} s = "
              f"{b['events_per_second']:8.1f}/s   per batch p50 {b['latency_ms']['p50']:.1f} ms "
              f"p99 {b['latency_ms']['p99']:.1f} ms")  # fmt: skip
        print(f"{'':<22} statuses {b['statuses']}, rows stored {b['rows_stored']}")
        print(f"{'ratio batch/COPY':<22} {report['ratio_batch_to_copy']:.3f}  (target >= {TARGET_BATCH_RATIO})")
    if "ceiling" in report:
        print(line("ceiling (no store)", report["ceiling"], "events"))
    if "ratio_ceiling_to_raw" in report:
        print(
            f"{'ratio ceiling/raw':<22} {report['ratio_ceiling_to_raw']:.3f}  (no target: the most engine/raw can be)"
        )
    for name in ("raw", "engine", "paced", "batch", "ceiling"):
        if name in report:
            cpu = report[name]["cpu_us_per_request"]
            parts = ", ".join(f"{k} {cpu[k]}" for k in SHOWN_CPU if k in cpu)
            seconds = report[name]["cpu_seconds"]
            print(f"CPU µs/request {name:<7} {parts}; machine busy {seconds['machine_busy_pct']}%, "
                  f"{seconds['other_pct_of_machine']}% of it not ours")  # fmt: skip
    print()
    scaffold.print_targets(targets)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = scaffold.parser(
        "ingest",
        __doc__,
        "Compares a real gunicorn server against raw psycopg single-row inserts on PostgreSQL, then"
        " measures latency under a paced open-loop load.",
        redis="for the default broker, Redis (the database of --broker is flushed at the end)",
    )
    parser.add_argument("--events", type=int, default=20_000, help="N: events in the throughput phases")
    parser.add_argument("--concurrency", type=int, default=16, help="K: concurrent clients (connections)")
    parser.add_argument("--rate", type=float, default=1000.0, help="events/s of the paced phase")
    parser.add_argument("--paced-seconds", type=float, default=10.0, help="duration of the paced phase")
    parser.add_argument("--paced-concurrency", type=int, default=64,
                        help="connections available to the paced schedule (enough that the client never "
                             "waits for one: rate x target latency = 50)")  # fmt: skip
    parser.add_argument("--server", choices=SERVERS, default="gthread",
                        help="WSGI server of the engine phases: gunicorn gthread or sync, or granian")  # fmt: skip
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument("--threads", type=int, default=8, help="threads a worker (gthread; granian: blocking threads)")
    parser.add_argument("--client-processes", type=int, default=4, help="load generator processes")
    parser.add_argument("--warmup", type=int, default=1000, help="events sent (and discarded) before measuring")
    parser.add_argument("--broker", default=DEFAULT_BROKER, help="Q_BROKER for the server: redis://… or orm")
    parser.add_argument("--phases", nargs="+", choices=("raw", "engine", "paced", "batch", "ceiling"),
                        default=["raw", "engine", "paced", "batch", "ceiling"], help="phases to run")  # fmt: skip
    parser.add_argument("--batch-events", type=int, default=20_000, help="events of the batch phase")
    parser.add_argument("--batch-size", type=int, default=500, help="events per batch (at most 1,000)")
    parser.add_argument("--batch-concurrency", type=int, default=4, help="concurrent batch senders")
    parser.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for the server, e.g. WEBHOOK_GROUP_COMMIT=0 (repeatable)")  # fmt: skip
    parser.add_argument("--gunicorn-arg", action="append", default=[], metavar="ARG",
                        help="extra gunicorn argument, e.g. --gunicorn-arg=--config=x.py (repeatable)")  # fmt: skip
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help=f"first wait up to this long for the machine to be under {QUIET_BUSY_PCT:.0f}%% "
                             "busy (other work on the same cores lowers every figure)")  # fmt: skip
    scaffold.common_arguments(
        parser,
        "ingest",
        database_url=DEFAULT_DATABASE_URL,
        seed_help="seed of the payload generator",
        quick="2,000 events, 3 s paced, 200 warm-up",
        wait_others=None,
    )
    args = scaffold.parse(
        parser, argv, quick={"events": 2_000, "paced_seconds": 3.0, "warmup": 200, "batch_events": 5_000}
    )
    if args.broker != "orm" and not args.broker.startswith(("redis://", "rediss://")):
        parser.error("--broker is 'orm' or a redis:// address")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return scaffold.run_benchmark("ingest", args, argv, Run, benchmark, judge, print_summary)


if __name__ == "__main__":
    sys.exit(main())
