"""The chaos test's moving parts: its own database and Redis, gunicorn, two qclusters and a monkey.

Everything here is a real process talking over a real socket; nothing in the engine is patched.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[2]
WEBHOOK_PATH = "/webhooks/provisioning/"
SECRET = "whsec_" + base64.b64encode(b"chaos-test-provisioning-key-0001").decode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --------------------------------------------------------------------------------------------- database
class ScratchDatabase:
    """A fresh PostgreSQL database beside the test database, migrated by the engine's own command."""

    def __init__(self, admin: dict[str, object]) -> None:
        self.admin = admin
        self.name = f"lifecycle_chaos_{uuid.uuid4().hex[:10]}"
        self.url = f"postgres://{admin['user']}@{admin['host']}:{admin['port']}/{self.name}"

    def create(self) -> None:
        with psycopg.connect(**self.admin, dbname="postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')

    def drop(self) -> None:
        with psycopg.connect(**self.admin, dbname="postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def query(self, sql: str, *params: object) -> list[tuple]:
        with psycopg.connect(**self.admin, dbname=self.name) as conn:
            return conn.execute(sql, params).fetchall()

    def execute(self, sql: str, *params: object) -> int:
        """Run one statement that returns no rows (committed); how many rows it changed."""
        with psycopg.connect(**self.admin, dbname=self.name) as conn:
            return conn.execute(sql, params).rowcount


# ------------------------------------------------------------------------------------------------ redis
class RedisServer:
    """A redis-server of our own on a free port, so restarting it disturbs nobody else."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self) -> None:
        """Killed without a chance to save (it keeps nothing anyway): queued tasks are lost."""
        self.kill()
        self.start()
        self.restarts += 1


# ------------------------------------------------------------------------------------------- processes
@dataclass
class Engine:
    """gunicorn plus two qcluster processes against the scratch database and the chosen broker."""

    env: dict[str, str]
    logs: Path
    port: int = field(default_factory=free_port)
    web: subprocess.Popen | None = None
    clusters: list[subprocess.Popen] = field(default_factory=list)

    def manage(self, *args: str, timeout: float = 180) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def start(self) -> None:
        """Start everything and wait until it serves; on any failure stop what did start."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        log = (self.logs / "gunicorn.log").open("w")
        self.web = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "config.wsgi",
                "--worker-class",
                "gthread",
                "--workers",
                "2",
                "--threads",
                "4",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--log-level",
                "warning",
            ],
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        for index in range(2):
            log = (self.logs / f"qcluster-{index}.log").open("w")
            self.clusters.append(
                subprocess.Popen(
                    [sys.executable, "manage.py", "qcluster"],
                    cwd=REPO,
                    env=self.env,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                )
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.web.poll() is not None:
                raise RuntimeError(f"gunicorn exited:\n{tail(self.logs / 'gunicorn.log')}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", WEBHOOK_PATH)
                if conn.getresponse().status == 405:
                    break
            except OSError:
                time.sleep(0.2)
        else:
            raise RuntimeError(f"gunicorn not ready:\n{tail(self.logs / 'gunicorn.log')}")
        for index, cluster in enumerate(self.clusters):
            while " running." not in (self.logs / f"qcluster-{index}.log").read_text(errors="replace"):
                if cluster.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"qcluster {index} not running:\n{tail(self.logs / f'qcluster-{index}.log')}")
                time.sleep(0.2)

    def worker_pids(self) -> tuple[list[int], list[int]]:
        """(busy, idle) task worker processes of both clusters, told apart by django-q2's process titles
        (setproctitle): "qcluster <name> processing <task> '<function>'" and "qcluster <name> idle"."""
        titles = self.worker_titles()
        busy = [pid for pid, title in titles.items() if " processing " in title]
        idle = [pid for pid, title in titles.items() if title.rstrip().endswith(" idle")]
        return busy, idle

    def worker_titles(self) -> dict[int, str]:
        """Every process under both clusters with its title (which names the task a busy worker runs)."""
        titles = {}
        for cluster in self.clusters:
            for pid in _descendants(cluster.pid):
                try:
                    title = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                titles[pid] = title.replace(b"\0", b" ").decode(errors="replace")
        return titles

    def stop(self) -> None:
        for proc in [self.web, *self.clusters]:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in [self.web, *self.clusters]:
            if proc is None:
                continue
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(30)
            with contextlib.suppress(ProcessLookupError):  # what is left of its group (orphaned workers)
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


class Monkey(threading.Thread):
    """Every 5–15 s (`every`): SIGKILL a qcluster worker in the middle of a task, and (with Redis) restart Redis.

    `prefer`: kill only workers running one of these task functions (the firings test aims at senders,
    sweeps and trigger evaluations, so kills land in the middle of a delivery); default: any busy worker.
    `first`: before the rhythm starts, for each group of task functions, wait (up to `first_within` s) for a
    worker running one of them and kill it, so the run is sure to have lost one of each group.

    Only busy workers are killed: an idle django-q2 worker waits in `multiprocessing.Queue.get()`
    holding the queue's read lock, and killing it there leaves its siblings blocked on that lock for
    good (a limitation of multiprocessing that docs/operations.md covers: /healthz's queue heartbeat
    turns it into a 503 and the supervisor restarts the cluster). A task lost mid-run is the case
    the engine itself must survive.
    """

    def __init__(
        self,
        engine: Engine,
        redis: RedisServer | None,
        *,
        seed: int,
        every: tuple[float, float] = (5, 15),
        prefer: tuple[str, ...] = (),
        first: tuple[tuple[str, ...], ...] = (),
        first_within: float = 15.0,
    ) -> None:
        super().__init__(daemon=True)
        self.engine, self.redis = engine, redis
        self.rng = random.Random(seed)
        self.every, self.prefer = every, prefer
        self.first, self.first_within = first, first_within
        self.stopping = threading.Event()
        self.kills: list[int] = []  # pids SIGKILLed mid-task
        self.killed_tasks: list[str] = []  # the title of each, which names its task
        self.redis_restarts = 0
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            for group in self.first:
                self._kill_a_busy_worker(within=self.first_within, prefer=group)
            while not self.stopping.wait(self.rng.uniform(*self.every)):
                self._kill_a_busy_worker(within=3.0, prefer=self.prefer)
                if self.redis is not None:
                    self.redis.restart()
                    self.redis_restarts += 1
        except BaseException as exc:  # a dead monkey must fail the test, not pass it quietly
            self.failure = exc

    def _kill_a_busy_worker(self, *, within: float, prefer: tuple[str, ...] = ()) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline and not self.stopping.is_set():
            busy = {pid: title for pid, title in self.engine.worker_titles().items() if " processing " in title}
            preferred = [pid for pid, title in busy.items() if any(name in title for name in prefer)]
            if preferred or (busy and not prefer):
                victim = self.rng.choice(preferred or sorted(busy))
                try:
                    os.kill(victim, signal.SIGKILL)
                except ProcessLookupError:
                    continue
                self.kills.append(victim)
                self.killed_tasks.append(busy[victim])
                return
            time.sleep(0.02)

    def stop(self) -> None:
        self.stopping.set()
        self.join(20)


# ---------------------------------------------------------------------------------------------- traffic
@dataclass(frozen=True)
class Sent:
    webhook_id: str
    workspace_id: str
    type: str
    occurred_at: datetime
    body: bytes


def stories(*, events: int, seed: int) -> list[Sent]:
    """`events` unique webhooks over about events/5 workspaces: trial, usage, maybe paid, maybe churned.

    Colleagues share a company domain, so converting leads share accounts (the hard case for
    duplicates in Salesforce). Each workspace's events have distinct timestamps, so sorted order is
    unambiguous.
    """
    rng = random.Random(seed)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=20)
    domains = [f"chaos{n}.example.com" for n in range(max(1, events // 40))]
    sent: list[Sent] = []
    index = 0
    while len(sent) < events:
        ws = f"ws_chaos_{seed}_{index}"
        email = f"owner{index}@{rng.choice(domains)}"
        at = start + timedelta(hours=rng.randint(0, 200))
        plan = rng.choice(["team", "business"])
        story = [
            (
                "trial.started",
                {
                    "workspace_id": ws,
                    "email": email,
                    "workspace_name": f"Chaos {index}",
                    "company": email.split("@")[1],
                    "plan": "trial",
                },
            )
        ]
        story += [
            (
                "usage.recorded",
                {
                    "workspace_id": ws,
                    "feature": rng.choice(["reports", "export", "api"]),
                    "user_email": email,
                    "count": rng.randint(1, 5),
                },
            )
            for _ in range(rng.randint(1, 3))
        ]
        roll = rng.random()
        if roll < 0.55:
            story.append(
                (
                    "subscription.converted",
                    {"workspace_id": ws, "email": email, "plan": plan, "mrr": f"{rng.choice([49, 99, 297])}.00"},
                )
            )
            if rng.random() < 0.3:
                story.append(("workspace.churned", {"workspace_id": ws, "email": email, "reason": "budget"}))
        elif roll < 0.75:
            story.append(("workspace.churned", {"workspace_id": ws, "email": email, "reason": "no_fit"}))
        for kind, data in story:
            at += timedelta(minutes=rng.randint(1, 600))
            if len(sent) == events:
                break
            timestamp = at.isoformat().replace("+00:00", "Z")
            body = json.dumps({"type": kind, "timestamp": timestamp, "data": data}).encode()
            sent.append(Sent(f"msg_chaos_{uuid.uuid4().hex}", ws, kind, at, body))
        index += 1
    return sent


def deliveries(sent: list[Sent], *, duplicate_share: float, seed: int) -> list[Sent]:
    """Every webhook once, `duplicate_share` of them twice, all shuffled (late and out of order)."""
    rng = random.Random(seed)
    out = list(sent) + rng.sample(sent, int(len(sent) * duplicate_share))
    rng.shuffle(out)
    return out


def sign(message: Sent, secret: str = SECRET) -> dict[str, str]:
    timestamp = str(int(time.time()))
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{message.webhook_id}.{timestamp}.".encode() + message.body
    signature = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return {
        "webhook-id": message.webhook_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": f"v1,{signature}",
        "content-type": "application/json",
    }


def send_all(port: int, messages: list[Sent], *, clients: int = 6, attempts: int = 60) -> dict[str, int]:
    """Deliver like a provisioning system does: retry a refused connection or a 5xx until a 2xx.

    Returns {webhook_id: final status}; an id whose every attempt failed is absent.
    """
    results: dict[str, int] = {}
    lock = threading.Lock()
    queue: Iterator[Sent] = iter(messages)

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while True:
            with lock:
                message = next(queue, None)
            if message is None:
                break
            for attempt in range(attempts):
                try:
                    conn.request("POST", WEBHOOK_PATH, body=message.body, headers=sign(message))
                    response = conn.getresponse()
                    response.read()
                    status = response.status
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                    time.sleep(min(0.1 * 2**attempt, 2))
                    continue
                if status < 500:
                    with lock:
                        if results.get(message.webhook_id) not in (202,):
                            results[message.webhook_id] = status
                    break
                time.sleep(min(0.1 * 2**attempt, 2))
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


# --------------------------------------------------------------------------------------------- expected
STATUS_OF = {"trial.started": "trial", "subscription.converted": "paid", "workspace.churned": "churned"}


def expected_states(sent: list[Sent]) -> dict[str, dict[str, object]]:
    """Final status and plan per workspace from the events in timestamp order (the sorted-order truth)."""
    states: dict[str, dict[str, object]] = {}
    for message in sorted(sent, key=lambda m: m.occurred_at):
        if message.type not in STATUS_OF:
            continue
        state = states.setdefault(message.workspace_id, {})
        state["status"] = STATUS_OF[message.type]
        if message.type == "subscription.converted":
            data = json.loads(message.body)["data"]
            state["plan"], state["mrr"] = data["plan"], data["mrr"]
    return states
