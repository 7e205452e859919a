#!/usr/bin/env python
"""Salesforce sync benchmark: API economy and freshness of the outbox drain, against the local emulator.

Every phase runs on a fresh PostgreSQL database (cloned from a migrated template) and a fresh emulator org
(emulators/salesforce, started in this process over HTTPS) that delays every API call by --latency (250 ms):

1. economy    — E lifecycle events over W workspaces, stored with events.services.events_store, processed with
                processing.tasks.process_workspaces and drained with salesforce.worker.outbox_drain() until the
                outbox is empty, in one Django child process. API calls received by the emulator ÷ a naive
                integration's.
2. freshness  — a real gunicorn (config.wsgi, gthread) and a real `manage.py qcluster` (Redis broker) take
                signed webhooks at a steady --rate for --seconds (open loop); for each accepted webhook, the
                time from its 202 until the emulator holds the Workspace__c with the event's resulting status.
3. faults     — the same with --fault-rate of the API calls failing at random (5xx, UNABLE_TO_LOCK_ROW,
                timeouts, commit-then-timeout); the outbox is drained to the end and checked for duplicates.

Each phase ends with the same check of the emulator's records against the engine's database and against
what the generated events imply. Figures, targets and pass/fail go to bench/results/salesforce.json.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import json
import math
import pickle
import random
import resource
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import scaffold
from common import (
    FIRST_NAMES,
    FREEMAIL,
    LAST_NAMES,
    PLANS,
    REASONS,
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
from scaffold import REPO, Progress, machine_info, say, tail

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from emulators.salesforce import Emulator  # needs the repository on sys.path; no Django inside

SCRIPT = Path(__file__).resolve()
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/lifecycle_bench_salesforce"
DEFAULT_REDIS = "redis://127.0.0.1:6379/13"
QUEUE_KEY = "django_q:lifecycle:q"  # django-q2's Redis list for the cluster named "lifecycle"
WEBHOOK_PATH = "/webhooks/provisioning/"
PHASES = ("economy", "freshness", "faults")
OTHER_BENCHMARKS = "bench/ingest.py|bench/process.py|bench/replay.py"

TARGET_RATIO = 0.01  # engine API calls ÷ naive API calls, at most
TARGET_P99_MS = 2000.0  # accepted → record in the emulator, at most

TRIAL, CONVERTED, CHURNED = "trial.started", "subscription.converted", "workspace.churned"
LABEL = {TRIAL: "Trial", CONVERTED: "Paid", CHURNED: "Churned"}  # Self_Serve_Status__c after the event
CONVERSION_SHARE, CHURN_SHARE, DUPLICATE_SHARE, SHARED_OWNER_SHARE = 0.40, 0.10, 0.05, 0.03
# A naive integration (the baseline): per accepted event, upsert the Workspace__c, look up / upsert the lead,
# look up the account, look up the contact; plus one convertLead per lead that converts.
NAIVE_CALLS_PER_EVENT = 4
OPEN_OUTBOX = ("pending", "retry", "dry_run")


# --- the events ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """One webhook delivery. `label` is the workspace's Self_Serve_Status__c once the event is applied."""

    msg_id: str
    type: str
    workspace: str
    body: str
    label: str
    redelivery: bool = False  # same webhook-id as an earlier delivery: answered 200 duplicate


@dataclass
class Truth:
    """What the generated events imply, independently of the engine."""

    owner: dict[str, str] = field(default_factory=dict)  # workspace -> owner email
    status: dict[str, str] = field(default_factory=dict)  # workspace -> final Self_Serve_Status__c
    converted: set[str] = field(default_factory=set)  # owner emails with a paid workspace: converted leads
    preexisting: list[str] = field(default_factory=list)  # company domains with an Account before any event

    def expected_accounts(self) -> int:
        """Pre-existing accounts, plus one per other company domain and per free-mail owner that converts."""
        domains = {email.rpartition("@")[2] for email in self.converted}
        company = {d for d in domains if d not in FREEMAIL} - set(self.preexisting)
        freemail = {email for email in self.converted if email.rpartition("@")[2] in FREEMAIL}
        return len(self.preexisting) + len(company) + len(freemail)

    def domain_has_account(self, domain: str) -> bool:
        return domain in self.preexisting or any(e.rpartition("@")[2] == domain for e in self.converted)


def company_domains(count: int, seed: int) -> list[str]:
    rng = random.Random(seed * 7919)
    return [f"co{d:04d}-{rng.choice(LAST_NAMES).lower()}.example.com" for d in range(count)]


class Owners:
    """Workspace owners on company domains or free-mail; a few people own several workspaces."""

    def __init__(self, rng: random.Random, domains: list[str], freemail_share: float) -> None:
        self.rng, self.domains, self.freemail_share = rng, domains, freemail_share
        self.people: list[tuple[str, str, str, str]] = []

    def pick(self, index: int, prefix: str = "") -> tuple[str, str, str, str]:
        rng = self.rng
        if self.people and rng.random() < SHARED_OWNER_SHARE:
            return rng.choice(self.people)
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        if rng.random() < self.freemail_share:
            person = (f"{first}.{last}{prefix}{index}@{rng.choice(FREEMAIL)}".lower(), first, last, "")
        else:
            domain = rng.choice(self.domains)
            person = (f"{first}.{last}{prefix}{index}@{domain}".lower(), first, last, domain.split(".")[0].title())
        self.people.append(person)
        return person


def rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def event_body(kind: str, ws: str, owner: tuple[str, str, str, str], at: datetime, *, plan: str, mrr: int) -> str:
    email, first, last, company = owner
    if kind == TRIAL:
        data = {
            "workspace_id": ws,
            "email": email,
            "workspace_name": f"{company or last} workspace {ws}",
            "first_name": first,
            "last_name": last,
            "company": company,
            "plan": "trial",
            "trial_expires_at": rfc3339(at + timedelta(days=14)),
        }
    elif kind == CONVERTED:
        data = {
            "workspace_id": ws,
            "email": email,
            "plan": plan,
            "mrr": f"{mrr}.00",
            "currency": "USD",
            "subscription_id": f"sub_{ws}",
            "billing_interval": "month",
        }
    else:
        data = {"workspace_id": ws, "email": email, "churned_at": rfc3339(at), "reason": REASONS[len(ws) % 4]}
    return json.dumps({"type": kind, "timestamp": rfc3339(at), "data": data})


def economy_stream(args: argparse.Namespace, truth: Truth) -> list[Delivery]:
    """E events over W workspaces: a trial each, a conversion for 40 % (then monthly renewals and seat
    changes, which fill the count up to E), a churn for 10 % (half of them after paying), 5 % duplicate
    deliveries (half with the same webhook-id, half re-sent under a new id)."""
    rng = random.Random(args.seed)
    owners = Owners(rng, company_domains(args.domains, args.seed), args.freemail_share)
    keys = [f"ws_{i:06d}" for i in range(args.workspaces)]
    converted = set(rng.sample(keys, round(CONVERSION_SHARE * len(keys))))
    churns = round(CHURN_SHARE * len(keys))
    churned = set(rng.sample(sorted(converted), churns // 2)) | set(
        rng.sample(sorted(set(keys) - converted), churns - churns // 2)
    )
    duplicates = round(DUPLICATE_SHARE * args.events)
    renewals_total = args.events - duplicates - len(keys) - len(converted) - len(churned)
    if renewals_total < 0 or (renewals_total and not converted):
        raise ValueError(f"--events must be at least {args.events - renewals_total} for {len(keys)} workspaces")
    renewals = Counter(rng.choices(sorted(converted), k=renewals_total))
    start = datetime.now(UTC) - timedelta(days=400)
    timed: list[tuple[datetime, Delivery]] = []
    for i, ws in enumerate(keys):
        owner = owners.pick(i)
        truth.owner[ws] = owner[0]
        plan, mrr = rng.choice(PLANS)
        at = start + timedelta(days=rng.uniform(0, 30))
        story = [(at, TRIAL, mrr)]
        if ws in converted:
            truth.converted.add(owner[0])
            at += timedelta(days=rng.uniform(3, 14))
            story.append((at, CONVERTED, mrr))
            for _ in range(renewals[ws]):
                at += timedelta(days=30, seconds=rng.randrange(3600))
                story.append((at, CONVERTED, mrr * rng.choice((1, 1, 1, 1, 2))))  # now and then a seat change
        if ws in churned:
            at += timedelta(days=rng.uniform(1, 20))
            story.append((at, CHURNED, mrr))
        truth.status[ws] = LABEL[story[-1][1]]
        for n, (when, kind, amount) in enumerate(story):
            body = event_body(kind, ws, owner, when, plan=plan, mrr=amount)
            timed.append((when, Delivery(f"evt_{ws}_{n:03d}", kind, ws, body, LABEL[kind])))
    originals = list(timed)
    for k in range(duplicates):
        when, d = rng.choice(originals)
        copy = Delivery(
            d.msg_id if k % 2 == 0 else f"{d.msg_id}_resent{k}",
            d.type,
            d.workspace,
            d.body,
            d.label,
            redelivery=k % 2 == 0,
        )
        timed.append((when + timedelta(minutes=rng.uniform(0, 60)), copy))
    timed.sort(key=lambda pair: pair[0])  # arrival order: roughly when they happened
    return [d for _, d in timed]


def freshness_stream(args: argparse.Namespace, truth: Truth, *, count: int, prefix: str, gap: float) -> list[Delivery]:
    """`count` events for a steady stream: new trials, conversions of trials sent at least `gap` seconds
    earlier (about 35 %), churns of trials or paying workspaces (about 12 %). Each event changes its
    workspace's status, so each is visible on its own in Salesforce."""
    rng = random.Random(f"{args.seed}-{prefix}")
    owners = Owners(rng, company_domains(args.domains, args.seed), args.freemail_share)
    trials: deque[tuple[str, float]] = deque()
    paid: deque[tuple[str, float]] = deque()
    start = datetime.now(UTC)
    out: list[Delivery] = []
    plans: dict[str, tuple[str, int]] = {}
    owner_of: dict[str, tuple[str, str, str, str]] = {}
    for i in range(count):
        t = i / args.rate
        r = rng.random()
        trial_ready = bool(trials) and trials[0][1] <= t - gap
        paid_ready = bool(paid) and paid[0][1] <= t - gap
        if r < 0.35 and trial_ready:
            ws, _ = trials.popleft()
            kind = CONVERTED
            paid.append((ws, t))
            truth.converted.add(owner_of[ws][0])
        elif r < 0.47 and (trial_ready or paid_ready):
            ws, _ = paid.popleft() if paid_ready and (not trial_ready or rng.random() < 0.5) else trials.popleft()
            kind = CHURNED
        else:
            ws, kind = f"ws_{prefix}{i:06d}", TRIAL
            owner_of[ws] = owners.pick(i, prefix)
            plans[ws] = rng.choice(PLANS)
            trials.append((ws, t))
            truth.owner[ws] = owner_of[ws][0]
        truth.status[ws] = LABEL[kind]
        plan, mrr = plans[ws]
        body = event_body(kind, ws, owner_of[ws], start + timedelta(seconds=t), plan=plan, mrr=mrr)
        out.append(Delivery(f"msg_{prefix}{i:06d}", kind, ws, body, LABEL[kind]))
    return out


# --- the emulator ----------------------------------------------------------------------------------------


class StampedEmulator:
    """The emulator, every request-log entry stamped with the monotonic time it was logged (its answer)."""

    def __init__(self, args: argparse.Namespace, *, faults: bool) -> None:
        self.emu = Emulator(timeout_sleep=args.timeout_sleep, seed=args.fault_seed, log_bodies=True)
        self.stamps: list[tuple[float, Any]] = []
        log = self.emu.requests_log
        original = log.append

        def append(entry: Any) -> None:
            self.stamps.append((time.monotonic(), entry))  # list.append is atomic under the GIL
            original(entry)

        log.append = append  # the dispatcher calls emulator.requests_log.append(entry)
        self.emu.start()
        self.emu.faults.latency(args.latency)  # every API call (the token endpoint excluded)
        if faults:
            self.emu.faults.random_mix(rate=args.fault_rate, seed=args.fault_seed)

    def clear_log(self) -> None:
        self.emu.requests_log.clear()
        self.stamps.clear()

    def api_calls(self, since: float = 0.0) -> list[tuple[float, Any]]:
        return [(t, e) for t, e in list(self.stamps) if e.is_api and t >= since]

    def tokens(self) -> int:
        return len(self.emu.requests_log.token_requests())

    def stop(self) -> None:
        self.emu.stop()


def call_summary(calls: list[tuple[float, Any]]) -> dict[str, Any]:
    kinds = Counter(f"{e.kind}:{e.object_name}" if e.object_name else e.kind for _, e in calls)
    records = [e.record_count for _, e in calls if e.record_count]
    return {
        "calls": len(calls),
        "by_kind": dict(kinds.most_common()),
        "records_per_call_mean": round(sum(records) / len(records), 1) if records else 0,
        "records_per_call_max": max(records, default=0),
        "statuses": dict(Counter(str(e.status) for _, e in calls)),
        "faults_injected": dict(Counter(f for _, e in calls for f in e.faults if f != "latency")),
        "call_errors": dict(Counter(_error_code(e) for _, e in calls if e.status != 200).most_common()),
    }


def _error_code(entry: Any) -> str:
    """errorCode of a refused call (REST: the first error's; SOAP and dropped answers: the status)."""
    data = entry.response
    if isinstance(data, list) and data and isinstance(data[0], dict) and "errorCode" in data[0]:
        return f"{entry.kind}: {entry.status} {data[0]['errorCode']}"
    return f"{entry.kind}: {entry.status if entry.status is not None else 'no answer'}"


# --- databases and processes ------------------------------------------------------------------------------


def engine_env(args: argparse.Namespace, emu: StampedEmulator, *, broker: str, secret: str, timeout: float | None):
    env = django_env(args.database_url, broker=broker, workers=args.q_workers, log_level="INFO")
    env.update(emu.emu.env())  # SALESFORCE_INSTANCE_URL, _LOGIN_URL, _CLIENT_ID, _CLIENT_SECRET, REQUESTS_CA_BUNDLE
    env["SALESFORCE_SYNC"] = "live"
    env["PROVISIONING_WEBHOOK_SECRET"] = secret
    if timeout is not None:
        env["SALESFORCE_TIMEOUT_SECONDS"] = str(timeout)
    return env


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(args: argparse.Namespace, env: dict, port: int, log_path: Path) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "config.wsgi",
        "--worker-class",
        "gthread",
        "--workers",
        str(args.gunicorn_workers),
        "--threads",
        str(args.gunicorn_threads),
        "--bind",
        f"127.0.0.1:{port}",
        "--keep-alive",
        "75",
        "--log-level",
        "warning",
    ]
    with log_path.open("w") as log:  # its own session: a Ctrl-C reaches only this script
        server = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=log, start_new_session=True)
    deadline, answered = time.monotonic() + 60, 0
    while time.monotonic() < deadline and answered < 4:
        if server.poll() is not None:
            raise RuntimeError(f"gunicorn exited with code {server.returncode}:\n{tail(log_path)}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", WEBHOOK_PATH)
            answered += conn.getresponse().status == 405
            conn.close()
        except OSError:
            time.sleep(0.2)
    if answered < 4:
        raise RuntimeError(f"gunicorn was not ready within 60 s:\n{tail(log_path)}")
    return server


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def unpickle(value: Any) -> Any:
    """A django-q2 task's args or result (PickledObjectField: base64 of a pickle) from our own bench database."""
    try:
        return pickle.loads(base64.b64decode(value))  # noqa: S301
    except Exception:
        return None


# --- the Django child: setup and the economy phase ----------------------------------------------------------


def drain_until_empty(limit: float, on_round: Any = None) -> dict[str, Any]:
    """outbox_drain() until nothing is open; between rounds that sent nothing, sleep until the next retry is due
    (the engine's own backoff, untouched). Stops when stuck (nothing due, nothing scheduled) or after `limit` s."""
    from django.db.models import Min
    from django.utils import timezone

    from salesforce.models import OutboxItem
    from salesforce.worker import outbox_drain

    totals: Counter = Counter()
    rounds, waited, stuck, paused = 0, 0.0, False, ""
    t0 = time.monotonic()
    while True:
        report = outbox_drain()
        rounds += 1
        totals.update(calls=report.calls, sent=report.sent, synced=report.synced, failed=report.failed)
        open_items = OutboxItem.objects.filter(state__in=OPEN_OUTBOX)
        remaining = open_items.count()
        if on_round is not None:
            on_round(rounds, remaining, totals)
        if remaining == 0 or time.monotonic() - t0 > limit:
            break
        if report.paused:
            paused = report.paused
            break
        if report.sent == 0:
            due = open_items.filter(next_attempt_at__gt=timezone.now()).aggregate(due=Min("next_attempt_at"))["due"]
            if due is None:
                stuck = True  # open rows nobody can send: blocked by a dependency that will not sync
                break
            wait = min(5.0, max(0.05, (due - timezone.now()).total_seconds()))
            time.sleep(wait)
            waited += wait
    states: Counter = Counter()
    for state in OutboxItem.objects.values_list("state", flat=True):
        states[state] += 1
    return {
        "seconds": round(time.monotonic() - t0, 2),
        "drain_calls": rounds,
        "slept_for_backoff_seconds": round(waited, 2),
        "reports": dict(totals),
        "outbox_states": dict(states),
        "stuck": stuck,
        "paused": paused,
    }


def child_main(args: argparse.Namespace) -> int:
    django_setup()
    work = json.loads(Path(args.work_file).read_text())
    if args.child == "setup":
        emit({"result": child_setup(work)})
    else:
        emit({"result": child_economy(work)})
    return 0


def child_setup(work: dict) -> dict:
    """Accounts that exist before the first event, already synced by the engine (their outbox rows synced, the
    emulator holding them with their Lifecycle_Engine_ID__c): the state of an org the engine has run against."""
    from salesforce.outbox import account_key, account_payload, outbox_record
    from workspaces.actors import acting_as_system
    from workspaces.models import Account

    with acting_as_system():
        for domain in work["domains"]:
            account = Account.objects.create(name=domain.split(".")[0].title(), domain=domain)
            outbox_record(object_type="Account", external_id=account_key(account), payload=account_payload(account))
    return drain_until_empty(120.0)


def child_economy(work: dict) -> dict:
    from events.models import Event
    from events.schemas import parse_provisioning_body
    from events.services import events_store
    from events.store import NewEvent
    from processing.tasks import process_workspaces

    deliveries = work["deliveries"]
    out: dict[str, Any] = {}
    t0 = time.monotonic()
    new = 0
    for start in range(0, len(deliveries), work["store_batch"]):
        batch = []
        for msg_id, body in deliveries[start : start + work["store_batch"]]:
            parsed = parse_provisioning_body(body.encode())  # what the webhook view does after the signature
            batch.append(
                NewEvent(
                    source=Event.Source.PROVISIONING,
                    external_id=msg_id,
                    type=parsed.type,
                    occurred_at=parsed.occurred_at,
                    workspace_key=parsed.workspace_key,
                    payload=parsed.body,
                )
            )
        new += sum(events_store(batch))
        emit({"stage": "store", "done": min(len(deliveries), start + work["store_batch"])})
    out["store_seconds"] = round(time.monotonic() - t0, 2)
    out["accepted"], out["duplicates"] = new, len(deliveries) - new
    keys = sorted({parse_workspace(body) for _, body in deliveries})
    t0 = time.monotonic()
    claimed = failed = 0
    for start in range(0, len(keys), work["chunk"]):
        outcome = process_workspaces(keys[start : start + work["chunk"]])
        claimed, failed = claimed + outcome["claimed"], failed + outcome["failed"]
        emit({"stage": "process", "done": min(len(keys), start + work["chunk"])})
    out["process_seconds"] = round(time.monotonic() - t0, 2)
    out["claimed"], out["failed_workspaces"] = claimed, failed
    out["events_by_status"] = dict(Counter(Event.objects.values_list("status", flat=True)))

    def on_round(rounds: int, remaining: int, totals: Counter) -> None:
        emit({"stage": "drain", "rounds": rounds, "remaining": remaining, "calls": totals["calls"]})

    out["drain"] = drain_until_empty(work["drain_limit"], on_round)
    return out


def parse_workspace(body: str) -> str:
    return json.loads(body)["data"]["workspace_id"]


# --- verification ------------------------------------------------------------------------------------------


def verify_sync(dsn: str, emu: StampedEmulator, truth: Truth) -> dict[str, Any]:
    """The emulator's records against the engine's database and against what the events imply."""
    store = emu.emu.store
    sf = {name: store.records(name) for name in ("Workspace__c", "Lead", "Account", "Contact")}
    ext = {
        name: {r["Lifecycle_Engine_ID__c"]: r for r in recs if r.get("Lifecycle_Engine_ID__c")}
        for name, recs in sf.items()
    }
    by_id = {r["Id"]: r for recs in sf.values() for r in recs}
    with psycopg.connect(dsn, autocommit=True) as conn:
        q = conn.execute
        workspaces = q(
            "SELECT workspace_id, status, lead_id, account_id, contact_id FROM workspaces_workspace"
        ).fetchall()
        converted_leads = {row[0] for row in q("SELECT email FROM workspaces_lead WHERE converted_at IS NOT NULL")}
        contact_account = dict(q("SELECT id, account_id FROM workspaces_contact").fetchall())
        local = {
            "workspaces": len(workspaces),
            "leads": q("SELECT count(*) FROM workspaces_lead").fetchone()[0],
            "converted_leads": len(converted_leads),
            "accounts": q("SELECT count(*) FROM workspaces_account").fetchone()[0],
            "contacts": len(contact_account),
            "events_by_status": dict(q("SELECT status, count(*) FROM events_event GROUP BY 1").fetchall()),
            "outbox_states": dict(q("SELECT state, count(*) FROM sync_outboxitem GROUP BY 1").fetchall()),
            "outbox_errors": dict(
                q("SELECT error_code, count(*) FROM sync_outboxitem WHERE error_code <> '' GROUP BY 1").fetchall()
            ),
            "outbox_max_attempts": q("SELECT coalesce(max(attempts), 0) FROM sync_outboxitem").fetchone()[0],
        }
    checks: dict[str, dict[str, Any]] = {}

    def check(name: str, ok: bool, value: Any, expected: Any, samples: list | None = None) -> None:
        checks[name] = {"pass": bool(ok), "value": value, "expected": expected}
        if samples:
            checks[name]["samples"] = samples[:10]

    ws_counts = Counter(r["Workspace_ID__c"] for r in sf["Workspace__c"])
    check(
        "one_workspace_record_per_workspace",
        set(ws_counts) == set(truth.status) and max(ws_counts.values(), default=1) == 1,
        len(sf["Workspace__c"]),
        len(truth.status),
        [w for w, n in ws_counts.items() if n > 1] + sorted(set(truth.status) - set(ws_counts))[:5],
    )
    sf_ws = {r["Workspace_ID__c"]: r for r in sf["Workspace__c"]}
    wrong = [
        f"{w}: {sf_ws.get(w, {}).get('Self_Serve_Status__c')} != {s}"
        for w, s in truth.status.items()
        if sf_ws.get(w, {}).get("Self_Serve_Status__c") != s
    ]
    check("final_status_matches_events", not wrong, len(truth.status) - len(wrong), len(truth.status), wrong)
    lead_emails = Counter(r["Email"] for r in sf["Lead"])
    owners = set(truth.owner.values())
    check(
        "one_lead_per_distinct_email",
        set(lead_emails) == owners
        and max(lead_emails.values(), default=1) == 1
        and len(ext["Lead"]) == len(sf["Lead"]),
        len(sf["Lead"]),
        len(owners),
        [e for e, n in lead_emails.items() if n > 1] + sorted(owners - set(lead_emails))[:5],
    )
    contact_emails = Counter(r["Email"] for r in sf["Contact"])
    converted_sf = {r["Email"] for r in sf["Lead"] if r.get("IsConverted")}
    bad_conv = [
        r["Email"]
        for r in sf["Lead"]
        if r.get("IsConverted") and by_id.get(r.get("ConvertedContactId"), {}).get("Email") != r["Email"]
    ]
    check(
        "one_contact_per_converted_lead",
        set(contact_emails) == truth.converted == converted_sf
        and max(contact_emails.values(), default=1) == 1
        and not bad_conv
        and len(ext["Contact"]) == len(sf["Contact"]),
        {"contacts": len(sf["Contact"]), "converted_leads": len(converted_sf)},
        len(truth.converted),
        [e for e, n in contact_emails.items() if n > 1] + bad_conv + sorted(truth.converted ^ converted_sf)[:5],
    )
    websites = Counter(r.get("Website") for r in sf["Account"] if r.get("Website"))
    converted_into = {r.get("ConvertedAccountId"): r["Email"] for r in sf["Lead"] if r.get("IsConverted")}
    no_ext = [
        f"{r['Id']} {r.get('Name')!r} made by converting {converted_into.get(r['Id'], '?')}, never stamped"
        for r in sf["Account"]
        if not r.get("Lifecycle_Engine_ID__c")
    ]
    dup_sites = [w for w, n in websites.items() if n > 1]
    expected_accounts = truth.expected_accounts()
    check(
        "no_duplicate_accounts",
        len(sf["Account"]) == expected_accounts == local["accounts"] and not dup_sites and not no_ext,
        {"accounts": len(sf["Account"]), "duplicate_websites": len(dup_sites), "without_external_id": len(no_ext)},
        expected_accounts,
        dup_sites + no_ext,
    )
    check("lookups_point_at_the_right_records", *_lookups(workspaces, contact_account, sf_ws, ext, by_id, truth))
    open_rows = sum(n for state, n in local["outbox_states"].items() if state != "synced")
    check("outbox_fully_synced", open_rows == 0, local["outbox_states"], "every row synced")
    return {
        "all_pass": all(c["pass"] for c in checks.values()),
        "checks": checks,
        "local": local,
        "emulator": {name: len(recs) for name, recs in sf.items()},
    }


def _lookups(workspaces: list, contact_account: dict, sf_ws: dict, ext: dict, by_id: dict, truth: Truth) -> tuple:
    """Workspace__c.Lead__c / Account__c / Contact__c against the engine's links and against the truth."""
    bad: list[str] = []

    def sf_id(object_name: str, key: str | None) -> str | None:
        return ext[object_name].get(key, {}).get("Id") if key else None

    for ws, _status, lead_id, account_id, contact_id in workspaces:
        rec = sf_ws.get(ws)
        if rec is None:
            bad.append(f"{ws}: no Workspace__c")
            continue
        want = {
            "Lead__c": sf_id("Lead", f"lead_{lead_id}" if lead_id else None),
            "Account__c": sf_id("Account", f"acc_{account_id}" if account_id else None),
            "Contact__c": sf_id("Contact", f"con_{contact_id}" if contact_id else None),
        }
        for lookup, value in want.items():
            if rec.get(lookup) != value:
                bad.append(f"{ws}: {lookup} {rec.get(lookup)} != {value} (engine's link)")
        if contact_id and by_id.get(want["Contact__c"], {}).get("AccountId") != sf_id(
            "Account", f"acc_{contact_account[contact_id]}"
        ):
            bad.append(f"{ws}: the contact's AccountId is not its account")
        email = truth.owner.get(ws, "")
        domain = email.rpartition("@")[2]
        if by_id.get(rec.get("Lead__c"), {}).get("Email") != email:
            bad.append(f"{ws}: Lead__c is not the lead of {email}")
        converted = email in truth.converted
        if (rec.get("Contact__c") is not None) != converted or (
            converted and by_id.get(rec["Contact__c"], {}).get("Email") != email
        ):
            bad.append(f"{ws}: Contact__c {rec.get('Contact__c')} but owner converted={converted}")
        account = by_id.get(rec.get("Account__c"), {})
        if domain in FREEMAIL:
            if (rec.get("Account__c") is not None) != converted:
                bad.append(f"{ws}: free-mail owner, Account__c {rec.get('Account__c')}, converted={converted}")
        elif truth.domain_has_account(domain) != (account.get("Website") == domain):
            bad.append(f"{ws}: Account__c website {account.get('Website')} for an owner on {domain}")
    return not bad, len(workspaces) - len({b.split(":")[0] for b in bad}), len(truth.status), bad


# --- freshness: sender, watcher, monitor ---------------------------------------------------------------------


class Watcher(threading.Thread):
    """Scans the emulator's store every `interval` s: when a workspace's Workspace__c shows the status an
    accepted event leads to, that event (and any earlier one of the workspace it supersedes) has appeared."""

    def __init__(self, emu: StampedEmulator, interval: float) -> None:
        super().__init__(name="watcher", daemon=True)
        self.store = emu.emu.store
        self.interval = interval
        self.pending: dict[str, list[tuple[int, str]]] = defaultdict(list)  # ws -> [(delivery index, label)]
        self.appeared: dict[int, float] = {}
        self.seen_as: dict[int, str] = {}  # the status that showed it (a later event's, when it superseded this one)
        self.lock = threading.Lock()
        self.halt = threading.Event()
        self.scans = 0

    def expect(self, index: int, delivery: Delivery) -> None:
        with self.lock:
            self.pending[delivery.workspace].append((index, delivery.label))

    def forget(self, index: int, workspace: str) -> None:
        with self.lock:
            self.pending[workspace] = [p for p in self.pending[workspace] if p[0] != index]

    def waiting(self) -> int:
        with self.lock:
            return sum(len(v) for v in self.pending.values())

    def run(self) -> None:
        obj = self.store.object_def("Workspace__c")
        fdef = obj.get_field("Workspace_ID__c")
        while not self.halt.wait(self.interval):
            with self.lock:
                keys = [ws for ws, items in self.pending.items() if items]
            statuses = {}
            with self.store.lock:  # no copies: the store's own index, under its lock
                for ws in keys:
                    ids = self.store.match_external(obj, fdef, ws)
                    record = self.store.live("Workspace__c", ids[0]) if ids else None
                    if record is not None:
                        statuses[ws] = record.get("Self_Serve_Status__c")
            now = time.monotonic()
            self.scans += 1
            with self.lock:
                for ws, status in statuses.items():
                    items = self.pending[ws]
                    hits = [index for index, label in items if label == status]
                    if hits:  # statuses of one workspace's events are distinct: this one and all before it are in
                        last = max(hits)
                        for index, _ in items:
                            if index <= last:
                                self.appeared[index] = now
                                self.seen_as[index] = status
                        self.pending[ws] = [p for p in items if p[0] > last]


class Monitor(threading.Thread):
    """Every 0.5 s: the broker's queue length and the open outbox rows; every 1 s: django-q2's saved tasks
    (it keeps only the last 500, so they are collected as they come)."""

    def __init__(self, dsn: str, redis_url: str) -> None:
        super().__init__(name="monitor", daemon=True)
        self.dsn, self.redis_url = dsn, redis_url
        self.tasks: dict[str, tuple] = {}
        self.queue: list[tuple[float, int]] = []
        self.outbox: list[tuple[float, int]] = []
        self.halt = threading.Event()
        self.since = datetime(2000, 1, 1, tzinfo=UTC)
        self.errors: list[str] = []

    def run(self) -> None:
        import redis

        with (
            contextlib.closing(redis.Redis.from_url(self.redis_url)) as broker,
            psycopg.connect(self.dsn, autocommit=True) as conn,
        ):
            tick = 0
            while not self.halt.wait(0.5):
                tick += 1
                try:
                    now = time.monotonic()
                    self.queue.append((now, int(broker.llen(QUEUE_KEY))))
                    self.outbox.append((now, self.open_outbox(conn)))
                    if tick % 2 == 0:
                        self.poll_tasks(conn)
                except Exception as exc:  # a missed sample is not worth stopping the run
                    if len(self.errors) < 5:
                        self.errors.append(repr(exc))
            self.poll_tasks(conn)

    @staticmethod
    def open_outbox(conn: psycopg.Connection) -> int:
        return conn.execute("SELECT count(*) FROM sync_outboxitem WHERE state IN ('pending', 'retry')").fetchone()[0]

    def poll_tasks(self, conn: psycopg.Connection) -> None:
        rows = conn.execute(
            "SELECT name, func, started, stopped, success, args, result FROM django_q_task WHERE stopped >= %s",
            (self.since - timedelta(seconds=3),),
        ).fetchall()
        for row in rows:
            self.tasks[row[0]] = row[1:]
            self.since = max(self.since, row[3])


def send_paced(
    port: int,
    deliveries: list[Delivery],
    *,
    rate: float,
    secret: str,
    watcher: Watcher | None,
    threads: int,
    label: str,
    quiet: bool,
    status_line: Any = None,
    base: int = 0,
) -> list[tuple]:
    """Open loop: delivery i is due at t0 + i/rate, signed when sent. Returns (due, sent, answered, status)."""
    from standardwebhooks.webhooks import Webhook

    signer = Webhook(secret)
    results: list[tuple | None] = [None] * len(deliveries)
    lock = threading.Lock()
    counter = iter(range(len(deliveries)))
    t0 = time.monotonic() + 0.2

    def work() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            due = t0 + i / rate
            if (wait := due - time.monotonic()) > 0:
                time.sleep(wait)
            d = deliveries[i]
            now = datetime.now(UTC)
            headers = {
                "Content-Type": "application/json",
                "webhook-id": d.msg_id,
                "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": signer.sign(d.msg_id, now, d.body),
            }
            if watcher is not None and not d.redelivery:
                watcher.expect(base + i, d)
            sent = time.monotonic()
            try:
                conn.request("POST", WEBHOOK_PATH, body=d.body.encode(), headers=headers)
                response = conn.getresponse()
                response.read()
                status: Any = response.status
            except Exception as exc:  # a failed request is a result, not a crash
                status = type(exc).__name__
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            results[i] = (due, sent, time.monotonic(), status)
            if status != 202 and watcher is not None:
                watcher.forget(base + i, d.workspace)
        conn.close()

    workers = [threading.Thread(target=work, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    progress = Progress(label, len(deliveries), quiet=quiet, unit=" ev")
    progress.t0 = t0
    while any(worker.is_alive() for worker in workers):
        time.sleep(0.5)
        done = sum(r is not None for r in results)
        progress.show(done, extra=status_line() if status_line else "")
    progress.show(len(deliveries), final=True, extra=status_line() if status_line else "")
    return results  # type: ignore[return-value]


# --- statistics ---------------------------------------------------------------------------------------------


def stats_ms(values: list[float]) -> dict[str, float]:
    """Nearest-rank percentiles in milliseconds of seconds."""
    if not values:
        return {}
    values = sorted(values)

    def pct(q: float) -> float:
        return round(1000 * values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))], 1)

    return {
        "n": len(values),
        "p50": pct(0.5),
        "p90": pct(0.9),
        "p99": pct(0.99),
        "max": round(1000 * values[-1], 1),
        "mean": round(1000 * sum(values) / len(values), 1),
    }


def plain_stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    values = sorted(values)
    return {
        "n": len(values),
        "mean": round(sum(values) / len(values), 2),
        "p50": values[len(values) // 2],
        "p90": values[min(len(values) - 1, math.ceil(0.9 * len(values)) - 1)],
        "max": values[-1],
    }


def series_stats(series: list[tuple[float, int]], t0: float, t1: float) -> dict[str, float]:
    window = [n for t, n in series if t0 <= t <= t1]
    if not window:
        return {}
    return {"max": max(window), "mean": round(sum(window) / len(window), 1), "last": window[-1]}


# --- the phases -------------------------------------------------------------------------------------------------


class Run:
    """What must be cleaned up, whatever happens."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-salesforce-"))
        self.procs: list[subprocess.Popen] = []
        self.emulators: list[StampedEmulator] = []
        self.databases: list[str] = []
        self.redis_used = False

    def cleanup(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                stop_process(proc)
        for emu in self.emulators:
            with contextlib.suppress(Exception):
                emu.stop()
        if not self.args.keep_database:
            for url in self.databases:
                with contextlib.suppress(Exception):
                    drop_database(url)
        if self.redis_used:
            with contextlib.suppress(Exception):
                flush_broker(self.args.redis)
        scaffold.clean_tmp(self.tmp, keep_logs=self.args.keep_logs)


def prepare_phase(run: Run, name: str, *, faults: bool, broker: str, timeout: float | None) -> tuple:
    """A fresh database and emulator org, the pre-existing accounts synced, the request log cleared."""
    args = run.args
    clone_database(template_url(args.database_url), args.database_url)
    emu = StampedEmulator(args, faults=False)  # faults start after the setup
    run.emulators.append(emu)
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    env = engine_env(args, emu, broker=broker, secret=secret, timeout=timeout)
    preexisting = company_domains(args.domains, args.seed)[: round(args.preexisting_share * args.domains)]
    work = run.tmp / f"{name}-setup.json"
    work.write_text(json.dumps({"domains": preexisting}))
    say(f"{name}: {len(preexisting)} pre-existing accounts, synced to the emulator by the engine (not counted)")
    setup = run_child(SCRIPT, ["--child", "setup", "--work-file", str(work)], {**env, "LOG_LEVEL": "WARNING"})
    if setup["outbox_states"] != {"synced": len(preexisting)}:
        raise RuntimeError(f"{name}: the pre-existing accounts did not sync: {setup}")
    emu.clear_log()
    if faults:
        emu.emu.faults.random_mix(rate=args.fault_rate, seed=args.fault_seed)
    return emu, env, secret, Truth(preexisting=preexisting)


class DrainTicker(threading.Thread):
    """Progress of the economy drain (one outbox_drain() round can take minutes): open outbox rows and API calls."""

    def __init__(self, dsn: str, emu: StampedEmulator, *, quiet: bool) -> None:
        super().__init__(name="drain-ticker", daemon=True)
        self.dsn, self.emu, self.quiet = dsn, emu, quiet
        self.halt = threading.Event()

    def run(self) -> None:
        if self.quiet:
            return
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            progress = None
            while not self.halt.wait(1.0):
                open_rows = Monitor.open_outbox(conn)
                if progress is None:
                    progress = Progress("economy: drain", max(1, open_rows), unit=" rows")
                calls = len(self.emu.api_calls())
                progress.show(max(0, progress.total - open_rows), extra=f"  open {open_rows}, API calls {calls}")


def run_economy(run: Run) -> dict[str, Any]:
    args = run.args
    emu, env, _, truth = prepare_phase(run, "economy", faults=False, broker="orm", timeout=None)
    deliveries = economy_stream(args, truth)
    work = run.tmp / "economy.json"
    work.write_text(
        json.dumps(
            {
                "deliveries": [(d.msg_id, d.body) for d in deliveries],
                "store_batch": 200,
                "chunk": 100,
                "drain_limit": args.drain_limit,
            }
        )
    )
    progress = {
        "store": Progress("economy: store", len(deliveries), quiet=args.no_progress, unit=" ev"),
        "process": Progress("economy: process", len(truth.status), quiet=args.no_progress, unit=" ws"),
    }

    ticker = DrainTicker(libpq_dsn(args.database_url), emu, quiet=args.no_progress)

    def on_line(message: dict) -> None:
        stage = message.get("stage")
        if stage in progress:
            progress[stage].show(message["done"], final=message["done"] == progress[stage].total)
            if stage == "process" and message["done"] == progress[stage].total:
                ticker.start()  # the drain starts now: show its progress from the open outbox rows
        elif stage == "drain" and not args.no_progress:
            say(f"economy: drain round {message['rounds']} done: {message['remaining']} outbox rows open")

    say(f"economy: {len(deliveries):,} deliveries over {len(truth.status):,} workspaces, latency {args.latency} s/call")
    t0 = time.monotonic()
    try:
        result = run_child(
            SCRIPT, ["--child", "economy", "--work-file", str(work)], {**env, "LOG_LEVEL": "WARNING"}, on_line=on_line
        )
    finally:
        ticker.halt.set()
    calls = emu.api_calls()
    first = min((t - e.duration for t, e in calls), default=t0)
    last = max((t for t, _ in calls), default=t0)
    accepted = result["accepted"]
    naive = {
        "per_event": NAIVE_CALLS_PER_EVENT,
        "accepted_events": accepted,
        "lead_conversions": len(truth.converted),
        "calls": NAIVE_CALLS_PER_EVENT * accepted + len(truth.converted),
        "definition": "per accepted event (new webhook-id): 1 upsert of the Workspace__c + 1 lookup/upsert of the "
        "lead + 1 lookup of the account + 1 lookup of the contact; plus 1 convertLead per lead that converts. "
        "Deliveries repeating a webhook-id are not counted (even a naive integration dedupes by id).",
    }
    engine_calls = len(calls)
    out = {
        "deliveries": len(deliveries),
        "workspaces": len(truth.status),
        "type_mix": dict(Counter(d.type for d in deliveries)),
        "redeliveries_same_id": sum(d.redelivery for d in deliveries),
        "child": result,
        "api": {**call_summary(calls), "record_errors": record_errors(calls)},
        "token_requests": emu.tokens(),
        "api_seconds_first_to_last_call": round(last - first, 2),
        "engine_calls": engine_calls,
        "engine_calls_per_1000_events": round(1000 * engine_calls / len(deliveries), 2),
        "naive": naive,
        "naive_calls_per_1000_events": round(1000 * naive["calls"] / len(deliveries), 1),
        "ratio_engine_to_naive": round(engine_calls / naive["calls"], 5),
        "naive_seconds_at_latency": round(naive["calls"] * args.latency, 1),
    }
    out["verification"] = verify_sync(libpq_dsn(args.database_url), emu, truth)
    emu.stop()
    v = out["verification"]
    say(
        f"economy: {engine_calls} API calls for {len(deliveries):,} events (naive {naive['calls']:,}): ratio "
        f"{out['ratio_engine_to_naive']:.4f}; verification {'OK' if v['all_pass'] else 'FAILED'}"
    )
    return out


def run_freshness(run: Run, name: str, *, faults: bool) -> dict[str, Any]:
    args = run.args
    dsn = libpq_dsn(args.database_url)
    emu, env, secret, truth = prepare_phase(
        run, name, faults=faults, broker=args.redis, timeout=args.sf_timeout if faults else None
    )
    run.redis_used = True
    flush_broker(args.redis)
    port = free_port()
    say(
        f"{name}: gunicorn on 127.0.0.1:{port} (-w {args.gunicorn_workers} --threads {args.gunicorn_threads}), "
        f"qcluster (Q_WORKERS={args.q_workers}, {args.redis})" + (f", faults {args.fault_rate:.0%}" if faults else "")
    )
    server = start_gunicorn(args, env, port, run.tmp / f"{name}-gunicorn.log")
    run.procs.append(server)
    cluster = start_qcluster(env, run.tmp / f"{name}-qcluster.log")
    run.procs.append(cluster)
    roots = {**find_cpu_roots(server.pid), "qcluster": cluster.pid}
    warm = freshness_stream(args, truth, count=args.warmup, prefix="w", gap=1e9)
    deliveries = freshness_stream(args, truth, count=round(args.rate * args.seconds), prefix="m", gap=args.gap)
    watcher = Watcher(emu, args.poll_ms / 1000)
    monitor = Monitor(dsn, args.redis)
    watcher.start()
    monitor.start()
    # Warm-up (not measured): gunicorn workers, the cluster's connections, the Salesforce token.
    send_paced(
        port,
        warm,
        rate=5.0,
        secret=secret,
        watcher=watcher,
        threads=2,
        label=f"{name}: warm-up",
        quiet=True,
        base=10**9,
    )
    deadline = time.monotonic() + 60
    while watcher.waiting() and time.monotonic() < deadline:
        time.sleep(0.2)
    warm_watcher_left = watcher.waiting()
    appeared_warm = dict(watcher.appeared)
    watcher.appeared.clear()
    wall_offset = time.time() - time.monotonic()
    t_start = time.monotonic()
    cpu_before, own_before = cpu_snapshot(roots), own_cpu()

    def status_line() -> str:
        queue = monitor.queue[-1][1] if monitor.queue else 0
        outbox = monitor.outbox[-1][1] if monitor.outbox else 0
        return (
            f"  in emulator {len(watcher.appeared):,}, waiting {watcher.waiting()}, queue {queue}, outbox open {outbox}"
        )

    results = send_paced(
        port,
        deliveries,
        rate=args.rate,
        secret=secret,
        watcher=watcher,
        threads=args.client_threads,
        label=name,
        quiet=args.no_progress,
        status_line=status_line,
    )
    t_sent = time.monotonic()
    settle = settle_outbox(dsn, watcher, args.settle_timeout, name, quiet=args.no_progress)
    t_end = time.monotonic()
    cpu = cpu_delta(cpu_before, cpu_snapshot(roots))
    cpu["bench (client, emulator, poller)"] = own_cpu() - own_before
    cpu["other"] = cpu["machine"] - sum(
        v for k, v in cpu.items() if k not in ("machine", "cores", "machine_busy_pct") and not k.endswith("_sys")
    )
    time.sleep(1.5)  # the cluster saves the last task results
    out_stop = {"qcluster": stop_process(cluster), "gunicorn": stop_process(server)}
    run.procs = [p for p in run.procs if p not in (cluster, server)]
    monitor.halt.set()
    watcher.halt.set()
    monitor.join(timeout=10)
    watcher.join(timeout=5)
    flush_broker(args.redis)

    log_path = run.tmp / f"{name}-qcluster.log"
    times = (t_start, t_sent, t_end)
    out = analyse_freshness(args, emu, deliveries, results, watcher, monitor, log_path, dsn, wall_offset, times)
    out["warmup"] = {"events": len(warm), "appeared": len(appeared_warm), "not_seen": warm_watcher_left}
    out["settle"] = settle
    out["stop_seconds"] = out_stop
    out["cpu_seconds"] = {k: round(v, 1) for k, v in cpu.items() if not k.endswith("_sys")}
    out["engine_cpu"] = engine_cpu(cpu, out, len(deliveries), args.rate)
    log = (run.tmp / f"{name}-qcluster.log").read_text(errors="replace").splitlines()
    errors = [line for line in log if log_level(line) in ("ERROR", "CRITICAL")]
    out["cluster_log"] = {
        "errors": len(errors),
        "error_samples": [line[:2000] for line in errors][:5],
        "warnings": sum(log_level(line) == "WARNING" for line in log),
        "hedged_calls": sum("sending it again" in line for line in log),  # salesforce/adapter.py, logged at INFO
    }
    out["verification"] = verify_sync(dsn, emu, truth)
    if args.dump_calls:
        dump_calls(args.dump_calls.with_suffix(f".{name}.jsonl"), emu.api_calls(), results[0][0] if results else 0.0)
    emu.stop()
    lat = out["latency_ms"]
    say(
        f"{name}: p50 {lat.get('p50')} ms, p99 {lat.get('p99')} ms over {lat.get('n')} events "
        f"({out['not_seen']} not seen); verification {'OK' if out['verification']['all_pass'] else 'FAILED'}"
    )
    return out


def engine_cpu(cpu: dict[str, float], out: dict[str, Any], events: int, rate: float) -> dict[str, Any]:
    """CPU the engine spent per event, by part, and the cores that takes at the target rate: whether the
    machine could keep up at all, whatever the latency design."""
    drain = float(out["drains"].get("cpu_seconds") or 0.0)
    parts = {
        "webhook (gunicorn)": cpu.get("gunicorn", 0.0),
        "processing and queue (qcluster minus the drainer)": max(0.0, cpu.get("qcluster", 0.0) - drain),
        "drainer (salesforce/drain.py)": drain,
        "postgres": cpu.get("postgres", 0.0),
        "redis": cpu.get("redis", 0.0),
    }
    per_event = {name: round(1000 * seconds / max(1, events), 2) for name, seconds in parts.items()}
    total_ms = sum(per_event.values())
    return {
        "ms_per_event": per_event,
        "total_ms_per_event": round(total_ms, 1),
        "cores_needed_at_rate": round(total_ms * rate / 1000, 2),
        "cores": cpu.get("cores"),
        "note": "CPU seconds of each process tree from the first measured webhook to settled ÷ events sent; on a "
        "machine shared with other work the figures run high (cache and scheduler contention)",
    }


def settle_outbox(dsn: str, watcher: Watcher, limit: float, name: str, *, quiet: bool) -> dict[str, Any]:
    """After the last webhook: wait until every accepted event is in the emulator and nothing is open in the
    outbox or the event table (the drain is left to the engine: triggered drains and the 1-minute schedule)."""
    t0 = time.monotonic()
    seen_all_at = None
    last_say = 0.0
    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            outbox = conn.execute(
                "SELECT count(*) FROM sync_outboxitem WHERE state IN ('pending', 'retry')"
            ).fetchone()[0]
            events = conn.execute(
                "SELECT count(*) FROM events_event WHERE status IN ('new', 'processing', 'error')"
            ).fetchone()[0]
            waiting = watcher.waiting()
            now = time.monotonic()
            if waiting == 0 and seen_all_at is None:
                seen_all_at = now - t0
            if waiting == 0 and outbox == 0 and events == 0:
                break
            if now - t0 > limit:
                say(f"{name}: gave up settling after {limit:.0f} s ({waiting} not seen, {outbox} outbox rows open)")
                break
            if not quiet and now - last_say >= 5:
                last_say = now
                say(
                    f"{name}: settling: {waiting} events not yet in the emulator, {outbox} outbox rows open, "
                    f"{events} events unprocessed ({now - t0:.0f} s)"
                )
            time.sleep(0.25)
    return {
        "seconds": round(time.monotonic() - t0, 1),
        "all_seen_after_seconds": round(seen_all_at, 1) if seen_all_at is not None else None,
        "outbox_open": outbox,
        "events_open": events,
    }


@dataclass
class TaskRun:
    """One django-q2 task: enqueued (django-q2 stores that as `started`), really started (the worker's log
    line), stopped; the worker process that ran it."""

    func: str
    enqueued: float
    started: float
    stopped: float
    worker: str
    args: Any
    result: Any


def cluster_log_starts(path: Path, wall_offset: float) -> dict[str, tuple[float, str]]:
    """{task name: (monotonic start, worker)} from the workers' INFO lines, plain
    `2026-11-23 03:59:17,259 INFO django-q Process-… processing <name> '<func>' [group]` or JSON
    (LOG_FORMAT=json, the production default) `{"time": "2026-11-23T03:59:17.259+00:00", "message": …}`."""
    out = {}
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                entry = json.loads(line)
                epoch = datetime.fromisoformat(entry["time"]).timestamp()
                parts = ["", "", entry.get("level", ""), "", *str(entry.get("message", "")).split(" ", 3)]
            except (ValueError, KeyError, TypeError):
                continue
        else:
            parts = line.split(" ", 7)
            try:
                stamp, millis = f"{parts[0]} {parts[1]}".split(",")
                epoch = time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")) + int(millis) / 1000
            except (ValueError, IndexError):
                continue
        if len(parts) < 7 or parts[5] != "processing" or parts[2] != "INFO":
            continue
        out[parts[6]] = (epoch - wall_offset, parts[4])
    return out


def task_runs(monitor: Monitor, log_path: Path, wall_offset: float) -> list[TaskRun]:
    starts = cluster_log_starts(log_path, wall_offset)
    runs = []
    for name, (func, enqueued, stopped, _success, raw_args, raw_result) in monitor.tasks.items():
        enq, stop = enqueued.timestamp() - wall_offset, stopped.timestamp() - wall_offset
        start, worker = starts.get(name, (enq, "?"))
        runs.append(TaskRun(func, enq, start, stop, worker, unpickle(raw_args), unpickle(raw_result)))
    return sorted(runs, key=lambda r: r.started)


def drain_report(run: TaskRun) -> dict[str, Any]:
    """The counts a drain task returned (salesforce.drain.DrainRun: under "report"; older engines: at the top)."""
    result = run.result if isinstance(run.result, dict) else {}
    return result.get("report", result)


def record_errors(calls: list[tuple[float, Any]]) -> dict[str, int]:
    """Per-record error codes in the answers of collection calls (e.g. a lookup to a record not yet sent)."""
    return dict(Counter(code for _, entry in calls for code in entry.record_errors()).most_common())


EXTERNAL_ID = "Lifecycle_Engine_ID__c"


def dump_calls(path: Path, calls: list[tuple[float, Any]], t0: float) -> None:
    """Every API call of a phase, one JSON line each (start in ms from the first send, what it carried,
    how it ended): to follow one record through faults and retries by hand."""
    with path.open("w") as out:
        for t, entry in calls:
            records = [rec for _, recs, _ in entry.collections() for rec in recs]
            carried = [rec.get(EXTERNAL_ID) or rec.get("Id") for rec in records]
            if entry.kind == "convert_lead" and isinstance(entry.body, list):
                carried = [c.get("lead_id") for c in entry.body if isinstance(c, dict)]
            line = {
                "at_ms": round(1000 * (t - entry.duration - t0)),
                "ms": round(1000 * entry.duration),
                "call": entry.kind,
                "object": entry.object_name,
                "status": entry.status,
                "faults": [f for f in entry.faults if f != "latency"],
                "records": carried,
                "record_errors": entry.record_errors(),
                "query": entry.query[:300] if entry.kind == "query" else "",
                "connection": entry.connection,
            }
            out.write(json.dumps(line) + "\n")
    print(f"API calls written to {path}", file=sys.stderr)


def slowest_timelines(dsn: str, emu: StampedEmulator, deliveries, results, watcher, calls, count: int = 10) -> list:
    """The `count` slowest events, each with the API calls that touched its workspace, lead, contact or
    account between its 202 and its record showing (offsets in ms from the 202): what the tail is made of."""
    seen = [(watcher.appeared[i] - results[i][2], i) for i in watcher.appeared if results[i]]
    slowest = sorted(seen, reverse=True)[:count]
    if not slowest:
        return []
    spaces = sorted({deliveries[i].workspace for _, i in slowest})
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT workspace_id, lead_id, contact_id, account_id FROM workspaces_workspace"
            " WHERE workspace_id = ANY(%s)",
            (spaces,),
        ).fetchall()
    store = emu.emu.store
    salesforce_ids = {  # external id -> Salesforce id, read once for every event below
        record[EXTERNAL_ID]: record["Id"]
        for name in ("Lead", "Contact", "Account")
        for record in store.find(name)
        if record.get(EXTERNAL_ID)
    }
    by_workspace = {r[0]: r for r in rows}
    timelines = []
    for latency, i in slowest:
        d, answered = deliveries[i], results[i][2]
        row = by_workspace.get(d.workspace, (d.workspace, None, None, None))
        keys = {d.workspace} | {f"{p}_{pk}" for p, pk in zip(("lead", "con", "acc"), row[1:], strict=True) if pk}
        ids = {salesforce_ids[key] for key in keys if key in salesforce_ids}
        touched = []
        for t, entry in calls:
            start = t - entry.duration
            if not answered - 0.05 <= start <= answered + latency + 0.05:
                continue
            records = [rec for _, recs, _ in entry.collections() for rec in recs]
            if entry.kind == "convert_lead" and isinstance(entry.body, list):
                records = [{"Id": c.get("lead_id")} for c in entry.body if isinstance(c, dict)]
            hit = any(rec.get(EXTERNAL_ID) in keys or rec.get("Id") in ids for rec in records)
            hit = hit or (entry.kind == "query" and any(sf_id in entry.query for sf_id in ids))
            if hit:
                touched.append(
                    {
                        "at_ms": round(1000 * (start - answered)),
                        "ms": round(1000 * entry.duration),
                        "call": entry.kind,
                        "status": entry.status,
                        "faults": [f for f in entry.faults if f != "latency"],
                        "record_errors": entry.record_errors(),
                    }
                )
        timelines.append(
            {"workspace": d.workspace, "type": d.type, "latency_ms": round(1000 * latency), "calls": touched}
        )
    return timelines


def analyse_freshness(args, emu, deliveries, results, watcher, monitor, log_path, dsn, wall_offset, times):
    """Latency per accepted event, split into stages, with the tasks and API calls that explain it."""
    t_start, t_sent, t_end = times
    statuses = Counter(str(r[3]) if r else "not sent" for r in results)
    accepted = [i for i, r in enumerate(results) if r and r[3] == 202]
    latency = [max(0.0, watcher.appeared[i] - results[i][2]) for i in accepted if i in watcher.appeared]
    not_seen = len(accepted) - len(latency)
    # An event never seen counts as slower than every seen one: it can only raise the percentiles.
    lat = stats_ms(latency + [float("inf")] * not_seen)
    lat = {k: (None if isinstance(v, float) and math.isinf(v) else v) for k, v in lat.items()}
    if not_seen:
        lat["mean"] = stats_ms(latency).get("mean")
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT external_id, completed_at FROM events_event WHERE source = 'provisioning'")
        completed = {ext: at.timestamp() - wall_offset for ext, at in rows.fetchall() if at is not None}
    runs = task_runs(monitor, log_path, wall_offset)
    process_runs: dict[str, list[TaskRun]] = defaultdict(list)
    for run in runs:
        if run.func == "processing.tasks.process_workspaces" and run.args:
            for ws in run.args[0]:
                process_runs[ws].append(run)
    drains = [r for r in runs if r.func == "salesforce.tasks.drain_outbox"]
    calls = emu.api_calls(since=t_start - 1)
    writes: dict[tuple[str, str], list[tuple[float, float, int]]] = defaultdict(list)
    by_conn: dict[int, list[float]] = defaultdict(list)
    for t, entry in calls:
        by_conn[entry.connection].append(t - entry.duration)
        for _, records, _ in entry.collections():  # a conversion's workspace rides in its stamps' composite call
            for rec in records:
                if rec.get("attributes", {}).get("type") == "Workspace__c":
                    key = (rec.get("Workspace_ID__c"), rec.get("Self_Serve_Status__c"))
                    writes[key].append((t - entry.duration, t, entry.connection))
    stages: dict[str, list[float]] = defaultdict(list)
    sync_side: list[float] = []  # event completed (processing committed) -> record seen in the emulator
    calls_before, attempts, superseded = [], [], 0
    for i in accepted:
        d, answered = deliveries[i], results[i][2]
        done, appeared = completed.get(d.msg_id), watcher.appeared.get(i)
        if done is None or appeared is None:
            continue
        sync_side.append(max(0.0, appeared - done))
        task = next(
            (r for r in process_runs.get(d.workspace, []) if r.started - 0.01 <= done <= r.stopped + 0.01), None
        )
        if task is not None:
            stages["1 queue: 202 -> its process task starts"].append(max(0.0, task.started - answered))
            stages["2 processing: task start -> event completed"].append(max(0.0, done - task.started))
        else:
            stages["1+2 queue and processing (task not identified)"].append(max(0.0, done - answered))
        seen_as = watcher.seen_as.get(i, d.label)
        superseded += seen_as != d.label
        carried = [w for w in writes.get((d.workspace, seen_as), []) if done - 0.01 <= w[0] <= appeared + 0.005]
        if not carried:
            stages["3-5 sync (the write not identified)"].append(max(0.0, appeared - done))
            continue
        attempts.append(len(carried))
        start, end, conn_id = max(carried)
        drain = next((r for r in reversed(drains) if r.started - 0.01 <= start <= r.stopped + 0.01), None)
        if drain is not None:
            stages["3 wait for a drain: completed -> the drain that sends it starts"].append(
                max(0.0, drain.started - done)
            )
            begin = max(drain.started, done)
            stages["4 in that drain, before its upsert (earlier calls)"].append(max(0.0, start - begin))
            calls_before.append(sum(1 for s in by_conn[conn_id] if drain.started - 0.001 <= s < start - 0.001))
        else:
            stages["3+4 completed -> its upsert starts (drain not identified)"].append(max(0.0, start - done))
        stages["5 the Workspace__c upsert call itself"].append(end - start)
        stages["6 answer logged -> seen by the poller"].append(max(0.0, appeared - end))
    measured = [r for r in drains if r.stopped >= t_start and r.started <= t_end]
    processes = [r for spans in process_runs.values() for r in spans if r.stopped >= t_start]
    processes = list({id(r): r for r in processes}.values())
    drain_calls = [drain_report(r).get("calls", 0) for r in measured]
    window = [c for c in calls if t_start <= c[0] <= t_end]
    naive = NAIVE_CALLS_PER_EVENT * len(accepted) + sum(d.type == CONVERTED for d in deliveries)
    return {
        "events": len(deliveries),
        "rate_target": args.rate,
        "achieved_rate": round(len(deliveries) / max(1e-9, max(r[2] for r in results if r) - results[0][0]), 1),
        "statuses": dict(statuses),
        "send_lag_ms": stats_ms([r[1] - r[0] for r in results if r]),
        "webhook_response_ms": stats_ms([r[2] - r[1] for r in results if r]),
        "latency_ms": lat,
        "latency_ms_seen_only": stats_ms(latency),
        "latency_ms_completed_to_emulator": stats_ms(sync_side),
        "latency_ms_by_type": {
            kind: stats_ms(
                [
                    watcher.appeared[i] - results[i][2]
                    for i in accepted
                    if deliveries[i].type == kind and i in watcher.appeared
                ]
            )
            for kind in LABEL
        },
        "not_seen": not_seen,
        "type_mix": dict(Counter(d.type for d in deliveries)),
        "stages_ms": {name: stats_ms(values) for name, values in sorted(stages.items())},
        "stage_share_of_total_time": {
            name: round(sum(values) / max(1e-9, sum(latency)), 3) for name, values in sorted(stages.items())
        },
        "api_calls_in_the_drain_before_the_workspace_upsert": plain_stats([float(c) for c in calls_before]),
        "workspace_upsert_attempts_per_event": dict(sorted(Counter(attempts).items())),
        "slowest_events": slowest_timelines(dsn, emu, deliveries, results, watcher, calls),
        "events_first_seen_under_a_later_status": superseded,
        "process_tasks": {
            "count": len(processes),
            "queue_wait_ms": stats_ms([r.started - r.enqueued for r in processes]),
            "run_ms": stats_ms([r.stopped - r.started for r in processes]),
            "workspaces_per_task": plain_stats([float(len(r.args[0])) for r in processes if r.args]),
        },
        "drains": {
            "count": len(measured),
            "per_second": round(len(measured) / max(1e-9, t_end - t_start), 2),
            "empty (0 API calls)": sum(1 for c in drain_calls if c == 0),
            "queue_wait_ms": stats_ms([r.started - r.enqueued for r in measured]),
            "run_ms": stats_ms([r.stopped - r.started for r in measured]),
            "run_ms_non_empty": stats_ms(
                [r.stopped - r.started for r, c in zip(measured, drain_calls, strict=True) if c]
            ),
            "api_calls_per_drain": plain_stats([float(c) for c in drain_calls]),
            "api_calls_per_drain_histogram": dict(sorted(Counter(drain_calls).items())),
            "records_sent_per_drain": plain_stats([float(drain_report(r).get("sent", 0)) for r in measured]),
            "records_failed": sum(drain_report(r).get("failed", 0) for r in measured),
            "ended": dict(Counter(str((r.result or {}).get("ended", "?")) for r in measured)),
            "cpu_seconds": round(sum(float((r.result or {}).get("cpu_seconds", 0)) for r in measured), 1),
            "worker_seconds_share": round(
                sum(r.stopped - r.started for r in measured)
                / max(1e-9, sum(r.stopped - r.started for r in [*measured, *processes])),
                3,
            ),
        },
        "cluster_worker_time": {
            "workers": args.q_workers,
            "process_seconds": round(sum(r.stopped - r.started for r in processes), 1),
            "drain_seconds": round(sum(r.stopped - r.started for r in measured), 1),
            "busy_share": round(
                sum(r.stopped - r.started for r in [*processes, *measured])
                / (args.q_workers * max(1e-9, t_end - t_start)),
                3,
            ),
            "worker_seconds_needed_per_second_of_sending": round(
                sum(r.stopped - r.started for r in [*processes, *measured]) / max(1e-9, t_sent - t_start), 2
            ),
        },
        "tasks_collected": len(runs),
        "tasks_without_a_start_line": sum(1 for r in runs if r.worker == "?"),
        "other_tasks": dict(
            Counter(
                r.func
                for r in runs
                if r.func not in ("processing.tasks.process_workspaces", "salesforce.tasks.drain_outbox")
            )
        ),
        "broker_queue_length": series_stats(monitor.queue, t_start, t_sent),
        "outbox_open_rows": series_stats(monitor.outbox, t_start, t_sent),
        "api": {**call_summary(window), "record_errors": record_errors(window)},
        "api_calls_per_1000_events": round(1000 * len(window) / len(deliveries), 1),
        "naive_calls": naive,
        "ratio_engine_to_naive": round(len(window) / naive, 4),
        "api_calls_per_second": round(len(window) / max(1e-9, t_end - t_start), 2),
        "token_requests": emu.tokens(),
        "watcher_scans": watcher.scans,
        "monitor_errors": monitor.errors,
        "seconds": {"sending": round(t_sent - t_start, 1), "settling": round(t_end - t_sent, 1)},
    }


# --- the benchmark ------------------------------------------------------------------------------------------


def code_state() -> dict[str, Any]:
    """The commit and the uncommitted engine files (other people edit the tree while benchmarks run)."""

    def git(*command: str) -> str:
        return subprocess.run(["git", *command], cwd=REPO, capture_output=True, text=True, check=False).stdout.strip()

    dirty = [line[3:] for line in git("status", "--short").splitlines() if not line[3:].startswith("bench/")]
    return {"commit": git("rev-parse", "--short", "HEAD"), "uncommitted_engine_files": dirty}


def uptime() -> str:
    done = subprocess.run(["uptime"], capture_output=True, text=True, check=False)
    return done.stdout.strip()


def benchmark(run: Run) -> dict[str, Any]:
    args = run.args
    report: dict[str, Any] = start_conditions(args.wait_others, pattern=OTHER_BENCHMARKS)
    report["code_at_start"] = code_state()
    report["other_benchmarks_at_start"] = scaffold.other_benchmarks(OTHER_BENCHMARKS)
    report["uptime_at_start"] = uptime()
    template = template_url(args.database_url)
    run.databases += [args.database_url, template]
    say(f"creating and migrating {db_name(template)} (each phase clones it)")
    recreate_database(template)
    migrate(django_env(template))
    report["postgres"] = server_info(template)
    report["phases"] = {}
    report["parameters_latency"] = args.latency
    if "economy" in args.phases:
        report["phases"]["economy"] = run_economy(run)
    if "freshness" in args.phases:
        report["phases"]["freshness"] = run_freshness(run, "freshness", faults=False)
    if "faults" in args.phases:
        report["phases"]["faults"] = run_freshness(run, "faults", faults=True)
    report["other_benchmarks_at_end"] = scaffold.other_benchmarks(OTHER_BENCHMARKS)
    report["uptime_at_end"] = uptime()
    report["machine_after"] = machine_info()
    return report


def judge(report: dict[str, Any]) -> dict[str, Any]:
    phases = report["phases"]
    targets: dict[str, Any] = {}
    if "economy" in phases:
        e = phases["economy"]
        targets["economy_ratio_engine_to_naive"] = {
            "target": f"<= {TARGET_RATIO}",
            "value": e["ratio_engine_to_naive"],
            "pass": e["ratio_engine_to_naive"] <= TARGET_RATIO,
        }
    for name in ("freshness", "faults"):
        if name in phases:
            p99 = phases[name]["latency_ms"].get("p99")
            targets[f"{name}_p99_ms"] = {
                "target": f"<= {TARGET_P99_MS:.0f}",
                "value": p99,
                "pass": p99 is not None and p99 <= TARGET_P99_MS,
            }
            ok = phases[name]["not_seen"] == 0 and phases[name]["statuses"].get("202") == phases[name]["events"]
            targets[f"{name}_every_event_accepted_and_seen"] = {
                "target": "every webhook 202 and in the emulator",
                "value": phases[name]["not_seen"],
                "pass": ok,
            }
    for name, phase in phases.items():
        v = phase["verification"]
        failed = [k for k, c in v["checks"].items() if not c["pass"]]
        targets[f"{name}_emulator_records_correct"] = {
            "target": "one Workspace__c per workspace, one Lead per email, one Contact per converted lead, "
            "no duplicate accounts, right lookups, outbox fully synced",
            "value": "all checks pass" if not failed else f"failed: {', '.join(failed)}",
            "pass": v["all_pass"],
        }
    return targets


def print_summary(report: dict[str, Any], targets: dict[str, Any]) -> None:
    phases = report["phases"]
    pad = " " * 11
    print()
    if "economy" in phases:
        e = phases["economy"]
        print(
            f"economy    {e['deliveries']:,} events / {e['workspaces']:,} workspaces: engine {e['engine_calls']} "
            f"API calls = {e['engine_calls_per_1000_events']}/1000 events; naive {e['naive']['calls']:,} = "
            f"{e['naive_calls_per_1000_events']}/1000; ratio {e['ratio_engine_to_naive']:.4f}"
        )
        print(f"{pad}calls {e['api']['by_kind']}, {e['api']['records_per_call_mean']} records/call")
        print(f"{pad}refused calls {e['api']['call_errors']}; record errors {e['api']['record_errors']}")
        print(
            f"{pad}store {e['child']['store_seconds']} s, process {e['child']['process_seconds']} s, drain "
            f"{e['child']['drain']['seconds']} s ({e['api_seconds_first_to_last_call']} s from first to last call; "
            f"naive at {report['parameters_latency']} s/call: {e['naive_seconds_at_latency']:,} s)"
        )
    for name in ("freshness", "faults"):
        if name not in phases:
            continue
        p = phases[name]
        lat = p["latency_ms"]
        print(
            f"{name:<10} {p['events']:,} events at {p['achieved_rate']}/s, accepted -> Workspace__c in the emulator: "
            f"p50 {lat.get('p50')} ms, p90 {lat.get('p90')} ms, p99 {lat.get('p99')} ms, max {lat.get('max')} ms; "
            f"not seen {p['not_seen']}"
        )
        side = p.get("latency_ms_completed_to_emulator", {})
        print(
            f"{pad}of which processed (event completed) -> in the emulator: p50 {side.get('p50')} ms, "
            f"p99 {side.get('p99')} ms (the sync's own share)"
        )
        for stage, st in p["stages_ms"].items():
            print(f"{pad}{stage:<66} p50 {st.get('p50'):>9} ms  p99 {st.get('p99'):>9} ms  n {st.get('n')}")
        pt, d, cw = p["process_tasks"], p["drains"], p["cluster_worker_time"]
        print(
            f"{pad}cluster: {cw['worker_seconds_needed_per_second_of_sending']} worker-seconds of tasks per second of "
            f"sending, for {cw['workers']} workers (process {cw['process_seconds']} s, drains {cw['drain_seconds']} s)"
        )
        print(
            f"{pad}process tasks {pt['count']}: queue wait p50 {pt['queue_wait_ms'].get('p50')} ms, "
            f"run p50 {pt['run_ms'].get('p50')} ms"
        )
        print(
            f"{pad}drains {d['count']} ({d['per_second']}/s, {d['empty (0 API calls)']} with no API call): queue wait "
            f"p50 {d['queue_wait_ms'].get('p50')} ms p99 {d['queue_wait_ms'].get('p99')} ms; run p50 "
            f"{d['run_ms'].get('p50')} ms; API calls/drain mean {d['api_calls_per_drain'].get('mean')} max "
            f"{d['api_calls_per_drain'].get('max')}; {d['worker_seconds_share']:.0%} of worker time, "
            f"{d.get('cpu_seconds')} CPU-s"
        )
        print(
            f"{pad}API {p['api']['calls']} calls = {p['api_calls_per_1000_events']}/1000 events (ratio to naive "
            f"{p['ratio_engine_to_naive']}), {p['api']['records_per_call_mean']} records/call; record errors "
            f"{p['api']['record_errors']}; refused calls {p['api']['call_errors']}; "
            f"injected {p['api']['faults_injected']}; calls sent a second time (hedged) "
            f"{p.get('cluster_log', {}).get('hedged_calls')}"
        )
        ec = p.get("engine_cpu", {})
        print(
            f"{pad}engine CPU {ec.get('total_ms_per_event')} ms per event {ec.get('ms_per_event')}: "
            f"{ec.get('cores_needed_at_rate')} cores at {p['rate_target']}/s, of {ec.get('cores')}"
        )
        print(
            f"{pad}broker queue max {p['broker_queue_length'].get('max')}, outbox open max "
            f"{p['outbox_open_rows'].get('max')}; settled {p['settle']['seconds']} s after the last webhook"
        )
    for name, phase in phases.items():
        v = phase["verification"]
        bad = {k: c for k, c in v["checks"].items() if not c["pass"]}
        verdict = "all checks pass" if not bad else "FAILED"
        print(f"{name:<10} verification: {verdict} (emulator {v['emulator']}, outbox {v['local']['outbox_states']})")
        for k, c in bad.items():
            print(f"{pad}{k}: {c['value']} (expected {c['expected']}) {c.get('samples', '')}")
    print(f"\nload at start: {report['uptime_at_start']}\nload at end:   {report['uptime_at_end']}\n")
    scaffold.print_targets(targets)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = scaffold.parser(
        "salesforce",
        __doc__,
        "",
        template=True,
        redis="for freshness and faults, Redis (the database of --redis is flushed before and after)",
    )
    parser.add_argument("--phases", default=",".join(PHASES), help="comma-separated subset of " + ",".join(PHASES))
    parser.add_argument("--events", type=int, default=10_000, help="economy: lifecycle events (deliveries)")
    parser.add_argument("--workspaces", type=int, default=2_500, help="economy: workspaces they are about")
    parser.add_argument("--domains", type=int, default=None, help="company domains (default: workspaces / 8)")
    parser.add_argument(
        "--preexisting-share",
        type=float,
        default=0.5,
        help="share of company domains with an Account (synced) before the first event",
    )
    parser.add_argument("--freemail-share", type=float, default=0.35, help="owners on free-mail domains")
    parser.add_argument("--latency", type=float, default=0.25, help="seconds the emulator adds to every API call")
    parser.add_argument("--rate", type=float, default=50.0, help="freshness/faults: webhooks per second (open loop)")
    parser.add_argument("--seconds", type=float, default=60.0, help="freshness/faults: how long to send")
    parser.add_argument(
        "--gap",
        type=float,
        default=10.0,
        help="freshness/faults: at least this many seconds between two events of one workspace",
    )
    parser.add_argument("--warmup", type=int, default=10, help="freshness/faults: trials sent first, not measured")
    parser.add_argument("--fault-rate", type=float, default=0.05, help="faults: share of API calls that fail")
    parser.add_argument("--fault-seed", type=int, default=7, help="faults: seed of the emulator's fault RNG")
    parser.add_argument(
        "--sf-timeout", type=float, default=2.0, help="faults: SALESFORCE_TIMEOUT_SECONDS of the engine"
    )
    parser.add_argument(
        "--timeout-sleep",
        type=float,
        default=3.0,
        help="faults: how long an injected timeout stalls (above --sf-timeout)",
    )
    parser.add_argument(
        "--settle-timeout",
        type=float,
        default=600.0,
        help="freshness/faults: after sending, wait at most this long for the outbox to drain",
    )
    parser.add_argument("--drain-limit", type=float, default=1200.0, help="economy: give up draining after this long")
    parser.add_argument("--poll-ms", type=float, default=20.0, help="how often the emulator's store is scanned")
    parser.add_argument("--gunicorn-workers", type=int, default=2)
    parser.add_argument("--gunicorn-threads", type=int, default=4)
    parser.add_argument(
        "--q-workers",
        type=int,
        default=3,
        help="Q_WORKERS of the cluster: the drainer holds one while work flows (README), so 2 cores take 3",
    )
    parser.add_argument("--client-threads", type=int, default=8, help="sender threads (connections)")
    scaffold.common_arguments(
        parser,
        "salesforce",
        database_url=DEFAULT_DATABASE_URL,
        database_help="PostgreSQL database to create and drop",
        redis=DEFAULT_REDIS,
        wait_others=scaffold.wait_others_help(OTHER_BENCHMARKS),
        quick="1,000 events over 250 workspaces, 15 s of freshness, --gap 3",
        keep_logs="keep the gunicorn and qcluster logs",
        children=("setup", "economy"),
    )
    parser.add_argument(
        "--dump-calls",
        type=Path,
        metavar="FILE",
        help="freshness/faults: also write every API call as JSON lines to FILE.<phase>.jsonl",
    )
    parser.add_argument("--work-file", help=argparse.SUPPRESS)
    args = scaffold.parse(parser, argv, quick={"events": 1_000, "workspaces": 250, "seconds": 15.0, "gap": 3.0})
    args.domains = args.domains or max(4, args.workspaces // 8)
    args.phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    if unknown := set(args.phases) - set(PHASES):
        parser.error(f"unknown phases: {', '.join(sorted(unknown))}")
    if args.timeout_sleep <= args.sf_timeout:
        parser.error("--timeout-sleep must exceed --sf-timeout, or an injected timeout is not one")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return scaffold.run_benchmark(
        "salesforce",
        args,
        argv,
        Run,
        benchmark,
        judge,
        print_summary,
        child_main,
        errors=(*scaffold.EXPECTED_ERRORS, ValueError),
    )


if __name__ == "__main__":
    sys.exit(main())
