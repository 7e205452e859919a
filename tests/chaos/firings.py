"""The firings chaos test's moving parts: trigger stories with their expected occurrences, the stand-ins
the actions reach (with the faults they inject), a ticker for the sweeps, and what is read back.

The stories are history (days old), so every timer a story sets is due as soon as it exists: what fires
is decided by the events alone, whatever order they arrive in, and the expected occurrences follow from
the stories in sorted order.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from emulators.mailsink import MailSink
from emulators.product_webhook import ProductWebhookSink
from emulators.product_webhook import _Handler as ProductHandler
from emulators.zendesk import ZendeskEmulator
from emulators.zendesk import _Handler as DeskHandler
from tests.chaos.harness import REPO, Sent, tail

DEFINITIONS = Path(__file__).resolve().parent / "definitions.json"
WIZARD = "integration.wizard"
#: The triggers of definitions.json, by what they are for here.
WELCOME, EXPORTS, STALLED, SILENT, LIMITED = (
    "chaos_welcome", "chaos_failed_exports", "chaos_wizard_stalled", "chaos_silent", "chaos_limited",
)  # fmt: skip
TEAM = "success@chaos.example.com"


# ---------------------------------------------------------------------------------------------- stories
@dataclass
class Stories:
    """The webhooks to send and, per trigger, the workspace → webhook id of the event its occurrence names."""

    sent: list[Sent] = field(default_factory=list)
    expected: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))
    limited: set[str] = field(default_factory=set)  # workspaces that must enter the chaos_limited cohort
    emails: dict[str, str] = field(default_factory=dict)

    @property
    def workspaces(self) -> list[str]:
        return sorted(self.emails)


def trigger_stories(*, workspaces: int, seed: int, now: datetime | None = None) -> Stories:
    """`workspaces` trials, each with usage that fires some triggers and deliberately misses others.

    By i % 3: three failed exports within 40 minutes (the count fires), two failed and one successful
    (no), three failed two hours apart (no). By i // 3 % 3: the wizard started and never finished (the
    stall fires, then its follow-up escalates), started and finished (no), or started with one flow and
    finished with another (fires: the finish is another flow's). By i // 9 % 2: two plan-limit hits
    (enters the cohort) or one (no). Every workspace fires the welcome and, its usage being days old,
    the silence (named after its latest usage event).
    """
    rng = random.Random(seed)
    start = (now or datetime.now(UTC)).replace(microsecond=0) - timedelta(days=3)
    stories = Stories()
    for index in range(workspaces):
        ws = f"ws_fire_{seed}_{index}"
        stories.emails[ws] = email = f"user{index}@firing{seed}-{index}.example.com"
        steps = _steps(index, email)
        if sum(kind == "plan.limit_reached" for _, kind, _, _ in steps) >= 2:
            stories.limited.add(ws)
        at = start + timedelta(minutes=7 * index)
        for offset, kind, data, fires in steps:
            when = at + offset + timedelta(seconds=rng.randint(0, 59))
            body = {"type": kind, "timestamp": _stamp(when), "data": {"workspace_id": ws, **data}}
            message = Sent(f"msg_fire_{seed}_{index}_{len(stories.sent)}", ws, kind, when, json.dumps(body).encode())
            stories.sent.append(message)
            if fires:
                stories.expected[fires][ws] = message.webhook_id
            if kind == "usage.recorded":
                stories.expected[SILENT][ws] = message.webhook_id  # the latest one stays
    return stories


Step = tuple[timedelta, str, dict[str, Any], str]  # (after the trial start, type, data, trigger it fires or "")


def _steps(index: int, email: str) -> list[Step]:
    """One workspace's story (steps a minute apart or more, so the random seconds never reorder them)."""
    steps: list[Step] = [
        (
            timedelta(0),
            "trial.started",
            {"email": email, "workspace_name": f"Firing {index}", "plan": "trial"},
            WELCOME,
        ),
        (timedelta(minutes=5), "usage.recorded", {"feature": "reports", "user_email": email}, ""),
    ]
    failed = {"feature": "export", "outcome": "error", "user_email": email}
    if index % 3 == 0:  # three within 40 minutes: the third completes the count
        steps += [
            (timedelta(minutes=20 + 10 * n), "usage.recorded", failed, EXPORTS if n == 2 else "") for n in range(3)
        ]
    elif index % 3 == 1:  # two failed, one that worked
        steps += [(timedelta(minutes=20 + 10 * n), "usage.recorded", failed, "") for n in range(2)]
        steps.append((timedelta(minutes=45), "usage.recorded", {**failed, "outcome": "success"}, ""))
    else:  # three, 70 minutes apart: never three within the hour
        steps += [(timedelta(minutes=20 + 70 * n), "usage.recorded", failed, "") for n in range(3)]
    wizard = (index // 3) % 3
    begun = {"feature": WIZARD, "step": "started", "flow_id": "f1", "user_email": email}
    steps.append((timedelta(hours=4), "usage.recorded", begun, "" if wizard == 1 else STALLED))
    if wizard:  # 1: finished; 2: another flow finished, so this one still stalls
        done = {**begun, "step": "finished", "flow_id": "f1" if wizard == 1 else "f2"}
        steps.append((timedelta(hours=4, minutes=20), "usage.recorded", done, ""))
    hits = 2 if (index // 9) % 2 == 0 else 1
    limit = {"limit": "envelopes", "used": 50, "allowed": 50}
    steps += [(timedelta(hours=5 + n), "plan.limit_reached", limit, "") for n in range(hits)]
    return steps


def _stamp(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


# --------------------------------------------------------------------------------------------- stand-ins
class SlowAnswers:
    """A share of answers given late: the stand-in has taken the message, the engine is still waiting
    (past its timeout, or killed meanwhile), so the same message is sent again. Shared by the handlers."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending = 0
        self.seconds = 0.0
        self.given = 0  # late answers actually given

    def add(self, count: int, seconds: float) -> None:
        with self.lock:
            self.pending += count
            self.seconds = seconds

    def clear(self) -> None:
        with self.lock:
            self.pending = 0

    def take(self) -> float:
        with self.lock:
            if not self.pending:
                return 0.0
            self.pending -= 1
            self.given += 1
            return self.seconds


class _SlowProduct(ProductHandler):
    slow: SlowAnswers

    def _send(self, status: int, document: dict[str, Any]) -> None:
        if status == 200 and document.get("status") == "accepted":
            time.sleep(self.slow.take())
        super()._send(status, document)


class _SlowDesk(DeskHandler):
    slow: SlowAnswers

    def _send(self, status: int, document: dict[str, Any]) -> None:
        if status == 201:
            time.sleep(self.slow.take())
        super()._send(status, document)


class _FlakySMTP:
    """The mail sink's SMTP handler with faults: refuse the next mails with 451 (nothing stored), or store
    one and answer "250" too late."""

    def __init__(self, sink: MailSink) -> None:
        self.store = sink.store
        self.refuse = 0
        self.slow = SlowAnswers()
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            refuse, self.refuse = self.refuse > 0, max(0, self.refuse - 1)
        if refuse:
            return "451 4.3.0 Chaos: try again later"
        self.store.add(mail_from=envelope.mail_from, rcpt_tos=list(envelope.rcpt_tos), raw=envelope.original_content)
        await asyncio.sleep(self.slow.take())
        return "250 Message accepted for delivery"


@dataclass
class StandIns:
    """The product's webhook receiver, Zendesk and the mail sink, each with its faults."""

    product: ProductWebhookSink
    desk: ZendeskEmulator
    mail: MailSink
    smtp: _FlakySMTP
    product_slow: SlowAnswers
    desk_slow: SlowAnswers

    @classmethod
    def start(cls, *, product_secret: str) -> StandIns:
        product = ProductWebhookSink(secret=product_secret, tls=False)
        product_slow, desk_slow = SlowAnswers(), SlowAnswers()
        product._server.RequestHandlerClass = type("SlowProduct", (_SlowProduct,), {"slow": product_slow})
        desk = ZendeskEmulator()
        desk._server.RequestHandlerClass = type("SlowDesk", (_SlowDesk,), {"slow": desk_slow})
        mail = MailSink(smtp_port=0, http_port=0)
        smtp = _FlakySMTP(mail)
        mail._smtp.handler = smtp
        product.start()
        desk.start()
        mail.start()
        return cls(product, desk, mail, smtp, product_slow, desk_slow)

    def stop(self) -> None:
        for stand_in in (self.product, self.desk, self.mail):
            stand_in.stop()

    def env(self, *, timeout: float) -> dict[str, str]:
        """Settings pointing the engine's channels here, with timeouts shorter than the slow answers."""
        return {
            **self.product.env(),
            **self.desk.env(),
            "EMAIL_URL": self.mail.email_url,
            "EMAIL_TIMEOUT": str(int(timeout)),
            "PRODUCT_WEBHOOK_TIMEOUT_SECONDS": str(timeout),
            "PRODUCT_WEBHOOK_CONNECT_TIMEOUT_SECONDS": str(timeout),
            "ZENDESK_TIMEOUT_SECONDS": str(timeout),
            "ZENDESK_CONNECT_TIMEOUT_SECONDS": str(timeout),
        }


class Gremlin(threading.Thread):
    """Faults at every stand-in: a 5xx (or a 429 at Zendesk), a stall past the engine's timeout before the
    message is taken, a late answer after it is taken, an SMTP 451. Each stand-in starts with some of each
    waiting (its first messages meet them, whenever they come), then every 0.5–1.5 s one more at each."""

    def __init__(self, stand_ins: StandIns, *, timeout: float, seed: int) -> None:
        super().__init__(daemon=True)
        self.stand_ins, self.timeout = stand_ins, timeout
        self.rng = random.Random(seed)
        self.stopping = threading.Event()
        self.injected: dict[str, int] = defaultdict(int)
        self.failure: BaseException | None = None
        late = timeout + 0.5
        self.faults = {
            "product": {
                "503": lambda n: stand_ins.product.fail_next(n, status=503),
                "stall": lambda n: stand_ins.product.fail_next(n, stall_seconds=late),
                "late answer": lambda n: stand_ins.product_slow.add(n, late),
            },
            "zendesk": {
                "500": lambda n: stand_ins.desk.fail_next(n, status=500),
                "429": lambda n: stand_ins.desk.fail_next(n, status=429),
                "late answer": lambda n: stand_ins.desk_slow.add(n, late),
            },
            "smtp": {"451": self._refuse_mail, "late answer": lambda n: stand_ins.smtp.slow.add(n, late)},
        }

    def run(self) -> None:
        try:
            for stand_in, kinds in self.faults.items():
                for kind in kinds:
                    self._inject(stand_in, kind, 2)
            while not self.stopping.wait(self.rng.uniform(0.5, 1.5)):
                for stand_in, kinds in self.faults.items():
                    self._inject(stand_in, self.rng.choice(sorted(kinds)), 1)
        except BaseException as exc:  # a dead gremlin must fail the test, not pass it quietly
            self.failure = exc

    def _inject(self, stand_in: str, kind: str, count: int) -> None:
        self.faults[stand_in][kind](count)
        self.injected[f"{stand_in} {kind}"] += count

    def _refuse_mail(self, count: int) -> None:
        with self.stand_ins.smtp.lock:
            self.stand_ins.smtp.refuse += count

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)
        # what is still queued would fail the settling deliveries forever: clear it
        self.stand_ins.product.state.faults.clear()
        self.stand_ins.desk.desk.faults.clear()
        for slow in (self.stand_ins.product_slow, self.stand_ins.desk_slow, self.stand_ins.smtp.slow):
            slow.clear()
        with self.stand_ins.smtp.lock:
            self.stand_ins.smtp.refuse = 0


# ------------------------------------------------------------------------------------------------ ticker
TICKED = ("processing.tasks.sweep", "triggers.tasks.fire_due_timers", "messaging.tasks.send_dispatches")
TICKER = """
import sys, time
import django
django.setup()
from django_q.tasks import async_task
every, funcs = float(sys.argv[1]), sys.argv[2:]
while True:
    for func in funcs:
        try:
            async_task(func, q_options={"group": "chaos-ticker"})
        except Exception as exc:  # the broker or the database away for a moment
            print(f"ticker: {func}: {exc!r}", flush=True)
    time.sleep(every)
"""


class Ticker:
    """The every-minute schedules of the sweeps (lost events, due timers, due dispatches), every few
    seconds instead: a one-minute test cannot wait for django-q2's scheduler, which looks every 30 s.
    The sweeps run as ordinary tasks in the clusters' workers, where the monkey kills them too."""

    def __init__(self, env: dict[str, str], logs: Path, *, every: float = 2.0) -> None:
        self.env, self.logs, self.every = env, logs, every
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        log = (self.logs / "ticker.log").open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", TICKER, str(self.every), *TICKED],
            cwd=REPO, env=self.env, stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def log(self) -> str:
        return tail(self.logs / "ticker.log")


# ---------------------------------------------------------------------------------------- what arrived
MESSAGE_LINE = re.compile(r"firing=(\d+) trigger=(\S+) channel=(\S+) workspace=(\S+)")


@dataclass(frozen=True)
class Arrived:
    """One copy of a message at a stand-in: its idempotency key there, and the firing its text names."""

    key: str  # webhook-id, Message-ID or external_id
    firing_id: int
    channel: str


def arrived_in_app(stand_ins: StandIns) -> list[Arrived]:
    """Messages the product took (one per webhook-id: it drops a repeated id, counted apart)."""
    return [
        Arrived(item.webhook_id, int(item.payload["data"]["firing_id"]), "in_app")
        for item in stand_ins.product.received
    ]


def arrived_mail(stand_ins: StandIns) -> list[Arrived]:
    """Every mail the sink stored, copies included."""
    found = []
    for mail in stand_ins.mail.store.all():
        match = MESSAGE_LINE.search(mail.part("plain"))
        assert match, f"a mail the chaos template did not write: {mail.subject!r}"
        found.append(Arrived(str(mail.message["Message-ID"]), int(match.group(1)), "email"))
    return found


def arrived_tickets(stand_ins: StandIns) -> list[Arrived]:
    """Every ticket the desk holds (a repeated send of one escalation adds a comment, not a ticket)."""
    found = []
    for ticket in stand_ins.desk.desk.with_external_id():
        match = MESSAGE_LINE.search(ticket["description"])
        assert match, f"a ticket the chaos template did not write: {ticket['subject']!r}"
        found.append(Arrived(str(ticket["external_id"]), int(match.group(1)), "ticket"))
    return found


def ticket_comments(stand_ins: StandIns) -> int:
    """Comments beyond each ticket's first: sends of an escalation that found its open ticket."""
    with stand_ins.desk.desk.lock:
        return sum(len(comments) - 1 for comments in stand_ins.desk.desk.comments.values())
