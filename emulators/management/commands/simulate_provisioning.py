"""`manage.py simulate_provisioning`: realistic signed provisioning traffic over real HTTP."""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from django.core.management.base import BaseCommand, CommandError, CommandParser

from emulators.simulate import SimulatedMessage, simulate_traffic
from events.schemas import ROLLED_UP_TYPES
from events.webhook_client import (
    EngineUnreachable,
    SigningKeyMissing,
    WebhookAnswer,
    provisioning_signing_key,
    signed_headers,
    webhook_post,
    webhook_url,
)

#: Retries of one message while the engine does not answer, before giving up (a restart takes a few s).
UNREACHABLE_RETRIES = (0.5, 1.0, 2.0, 4.0)
#: Attempts of one message answered 429 rate_limited, each after the Retry-After it names (at most 30 s).
RATE_LIMITED_RETRIES = 5
EXPECTED = {"accepted", "duplicate", "ignored"}


def _share(value: str) -> float:
    try:
        share = float(value)
    except ValueError:
        share = -1.0
    if not 0 <= share <= 1:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got {value!r}")
    return share


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Command(BaseCommand):
    requires_system_checks: list[str] = []  # a client of the engine: the engine's own checks are not its business
    help = (
        "Send realistic, signed provisioning traffic to a running engine over HTTP: trial.started for "
        "--workspaces workspaces (colleagues sharing company domains, free-mail addresses, companies that "
        "already are accounts), usage.recorded, subscription.converted with plan and MRR, workspace.churned, "
        "trials expiring in the next 1-10 days and some already expired — plus redeliveries of the same "
        "webhook-id and late, out-of-order events. Messages are signed per Standard Webhooks with the first "
        "key of PROVISIONING_WEBHOOK_SECRET (environment or .env). Progress and ETA go to stderr; a summary "
        "of the answers to stdout. Exits non-zero if any answer was not 202/200. The same --seed sends the "
        "same workspaces and webhook-ids, so a second run against the same engine is all duplicates."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--url",
            default="http://127.0.0.1:8000",
            help="The engine's base URL (the webhook path /webhooks/provisioning/ is added) or the full "
            "endpoint URL. Default http://127.0.0.1:8000.",
        )
        parser.add_argument("--workspaces", type=int, default=300, help="How many workspaces (default 300).")
        parser.add_argument(
            "--rate", type=float, default=20.0, help="Messages per second (default 20; 0 = as fast as possible)."
        )
        parser.add_argument("--events", type=int, default=None, help="Stop after this many messages.")
        parser.add_argument("--duration", type=float, default=None, help="Stop after this many seconds.")
        parser.add_argument(
            "--seed", type=int, default=None, help="Seed of the simulation (default: random, printed to repeat it)."
        )
        parser.add_argument(
            "--duplicate-share",
            type=_share,
            default=0.1,
            help="Share of messages delivered twice with the same webhook-id (0-1, default 0.1).",
        )
        parser.add_argument(
            "--late-share",
            type=_share,
            default=0.05,
            help="Share of usage/conversion/churn events held back until after a newer event of their "
            "workspace (0-1, default 0.05).",
        )
        parser.add_argument("--timeout", type=float, default=10.0, help="Seconds to wait for each answer.")
        parser.add_argument(
            "--batch-size",
            type=int,
            default=0,
            help="Send usage, ticket and plan-limit events in batches of up to this many (1-1000) to "
            "/webhooks/provisioning/batch/, as telemetry senders do; lifecycle events still go one by one. "
            "Default 0: every event alone. --rate then counts requests, a batch being one.",
        )
        parser.add_argument(
            "--concurrency",
            type=int,
            default=4,
            help="Requests in flight at once (default 4; 1 sends strictly in the generated order).",
        )

    def handle(self, *args, **opts) -> None:
        if not 0 <= opts["batch_size"] <= MAX_BATCH:
            raise CommandError(f"--batch-size must be 0 (off) to {MAX_BATCH}, got {opts['batch_size']}.")
        for name in ("workspaces", "rate", "events", "duration", "timeout", "concurrency"):
            value = opts[name]
            if value is not None and (value < 0 or (value == 0 and name in ("workspaces", "timeout", "concurrency"))):
                raise CommandError(f"--{name} must be positive, got {value}.")
        try:
            key = provisioning_signing_key()
        except SigningKeyMissing as exc:
            raise CommandError(str(exc)) from exc
        seed = opts["seed"] if opts["seed"] is not None else random.SystemRandom().randrange(1_000_000)
        messages = simulate_traffic(
            workspaces=opts["workspaces"],
            now=datetime.now(UTC),
            seed=seed,
            duplicate_share=opts["duplicate_share"],
            late_share=opts["late_share"],
        )
        if opts["events"] is not None:
            messages = messages[: opts["events"]]
        url = webhook_url(opts["url"])
        deliveries = deliveries_of(messages, batch_size=opts["batch_size"])
        batched = sum(len(d) > 1 or d[0].type in ROLLED_UP_TYPES for d in deliveries) if opts["batch_size"] else 0
        self.stderr.write(
            f"Sending {len(messages)} messages for {opts['workspaces']} workspaces to {url} "
            f"in {len(deliveries)} requests ({batched} batches) at {opts['rate'] or 'max'}/s (seed {seed})."
        )
        sender = _Sender(
            self, url=url, key=key, rate=opts["rate"], timeout=opts["timeout"], concurrency=opts["concurrency"]
        )
        try:
            sender.run(deliveries, duration=opts["duration"], batched=bool(opts["batch_size"]))
        except KeyboardInterrupt:
            self._summary(sender, messages)
            raise CommandError("Interrupted.", returncode=130) from None
        except CommandError:
            if sender.sent:
                self._summary(sender, messages)
            raise
        self._summary(sender, messages)
        unexpected = sum(n for (status, outcome), n in sender.answers.items() if outcome not in EXPECTED)
        if unexpected:
            raise CommandError(f"{unexpected} message(s) were not accepted: see the summary above.{sender.hint()}")

    def _summary(self, sender: _Sender, messages: list[SimulatedMessage]) -> None:
        sent = messages[: sender.sent]
        elapsed = time.monotonic() - sender.started
        self.stdout.write(
            f"Sent {sender.sent} of {len(messages)} messages in {elapsed:.1f} s "
            f"({sender.sent / elapsed if elapsed else 0:.1f}/s). Answers:"
        )
        for (status, outcome), count in sorted(sender.answers.items()):
            self.stdout.write(f"  {status} {outcome:<20} {count:>6}")
        kinds = Counter(message.type for message in sent if not message.duplicate)
        self.stdout.write(
            "Sent: "
            + ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
            + f"; {sum(m.duplicate for m in sent)} redeliveries, {sum(m.late for m in sent)} late/out-of-order."
        )
        if sender.throttled:
            self.stdout.write(f"{sender.throttled} attempt(s) were answered 429 rate_limited and sent again later.")


MAX_BATCH = 1000


def deliveries_of(messages: list[SimulatedMessage], *, batch_size: int) -> list[list[SimulatedMessage]]:
    """The requests to make, in the messages' order: telemetry grouped into batches of up to `batch_size`
    (a batch goes when full, or at the end), every lifecycle message alone; without batching, all alone."""
    if not batch_size:
        return [[message] for message in messages]
    deliveries: list[list[SimulatedMessage]] = []
    pending: list[SimulatedMessage] = []
    for message in messages:
        if message.type not in ROLLED_UP_TYPES:
            deliveries.append([message])
            continue
        if any(other.msg_id == message.msg_id for other in pending):  # a redelivery goes in a later batch
            deliveries.append(pending)
            pending = []
        pending.append(message)
        if len(pending) == batch_size:
            deliveries.append(pending)
            pending = []
    if pending:
        deliveries.append(pending)
    return deliveries


def batch_body(messages: list[SimulatedMessage]) -> str:
    """CONTRACT §2b: each event under its own id, the idempotency key it would have alone."""
    events = [{"id": message.msg_id, **message.body} for message in messages]
    return json.dumps({"events": events}, separators=(",", ":"), ensure_ascii=False)


def batch_id(messages: list[SimulatedMessage]) -> str:
    """The batch's own webhook-id, the same for the same messages (a re-run is a duplicate batch)."""
    digest = hashlib.sha256("\n".join(message.msg_id for message in messages).encode()).hexdigest()[:24]
    return f"batch_{digest}"


def batch_url(url: str) -> str:
    return url.rstrip("/") + "/batch/"


class _Sender:
    """The paced sending loop: up to `concurrency` requests in flight; counts answers by (status, outcome)."""

    def __init__(self, command: Command, *, url: str, key: str, rate: float, timeout: float, concurrency: int) -> None:
        self.command, self.url, self.key, self.rate, self.timeout = command, url, key, rate, timeout
        self.concurrency = concurrency
        self.answers: Counter[tuple[int, str]] = Counter()
        self.sent = 0
        self.throttled = 0
        self.total = 0
        self.started = time.monotonic()
        self.failure: CommandError | None = None
        self._lock = threading.Lock()
        self._last_progress = 0.0
        self._tty = sys.stderr.isatty()

    def run(self, deliveries: list[list[SimulatedMessage]], *, duration: float | None, batched: bool = False) -> None:
        """Each delivery is one request: a message alone, or (`batched`) a batch of telemetry messages."""
        self.started, self.total = time.monotonic(), sum(len(delivery) for delivery in deliveries)
        self.batch_url = batch_url(self.url) if batched else ""
        slots = threading.BoundedSemaphore(self.concurrency)
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="simulate") as pool:
            for index, message in enumerate(deliveries):
                if self.rate:
                    time.sleep(max(0.0, self.started + index / self.rate - time.monotonic()))
                if self.failure is not None or (duration is not None and time.monotonic() - self.started >= duration):
                    break
                if index == 0:  # alone: an engine that is not there is reported at once
                    self._deliver(message)
                    continue
                slots.acquire()
                pool.submit(self._deliver_in_slot, message, slots)
        if self.failure is not None:
            raise self.failure
        self._progress(final=True)

    def _deliver_in_slot(self, message: list[SimulatedMessage], slots: threading.BoundedSemaphore) -> None:
        try:
            self._deliver(message)
        except CommandError as exc:
            self.failure = self.failure or exc
        finally:
            slots.release()

    def _deliver(self, delivery: list[SimulatedMessage]) -> None:
        if self.batch_url and delivery[0].type in ROLLED_UP_TYPES:
            body, msg_id = batch_body(delivery), batch_id(delivery)
            answer = self._send(self.batch_url, body, msg_id)
            counts = answer.batch_counts(len(delivery))
        else:
            [message] = delivery
            answer = self._send(self.url, message.body_json(), message.msg_id)
            counts = {answer.outcome: 1}
        with self._lock:
            self.sent += len(delivery)
            for outcome, count in counts.items():
                self.answers[(answer.status, outcome)] += count
            self._progress()

    def _send(self, url: str, body: str, msg_id: str) -> WebhookAnswer:
        """One request, retried like a sender does: while the engine is briefly away, and after a 429."""
        unreachable = iter(UNREACHABLE_RETRIES)
        for _ in range(RATE_LIMITED_RETRIES + 1):
            # Signed at send time: a retry is a new attempt of the same message, as senders do it.
            headers = signed_headers(key=self.key, msg_id=msg_id, body=body)
            try:
                answer = webhook_post(url=url, body=body, headers=headers, timeout=self.timeout)
            except EngineUnreachable as exc:
                pause = next(unreachable, None)
                if self.sent == 0 or pause is None:
                    raise CommandError(f"{exc}. Is the engine running (`make run` or `make demo`)?") from exc
                time.sleep(pause)
                continue
            if answer.status != 429:
                return answer
            with self._lock:
                self.throttled += 1
            time.sleep(min(answer.retry_after or 1.0, 30.0))
        return answer

    def _progress(self, *, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._last_progress < (1.0 if self._tty else 5.0):
            return
        self._last_progress = now
        elapsed = now - self.started
        pace = self.sent / elapsed if elapsed > 0 else 0.0
        total = self.total
        eta = (total - self.sent) / pace if pace else 0.0
        done = sum(n for (_, outcome), n in self.answers.items() if outcome in EXPECTED)
        line = (
            f"{self.sent}/{total} sent ({100 * self.sent / max(total, 1):.0f}%), {pace:.1f}/s, "
            f"ETA {_duration(eta)}, {done} ok, {self.sent - done} failed"
        )
        if self._tty:
            self.command.stderr.write("\r" + line.ljust(78), ending="\n" if final else "")
            self.command.stderr.flush()
        else:
            self.command.stderr.write(line)

    def hint(self) -> str:
        outcomes = {outcome for _, outcome in self.answers}
        if "invalid_signature" in outcomes:
            return " invalid_signature: the engine has another PROVISIONING_WEBHOOK_SECRET than this command."
        if "not_configured" in outcomes:
            return " not_configured: the engine has no PROVISIONING_WEBHOOK_SECRET."
        if "stale_timestamp" in outcomes:
            return " stale_timestamp: this machine's clock and the engine's differ by more than 300 s."
        return ""
