"""The drain trigger: a drain within moments of a commit, one drainer at a time, bursts debounced.

Processing calls `drain_request()` after it commits outbox rows. That marks the control row dirty and
enqueues a drain task only if no drainer holds the lease and none is queued already, so a burst of
commits costs one task, not one each. The drainer (`drain_run`, run by the `salesforce.tasks.drain_outbox`
task) takes the lease and sends each object type from its own thread (PostgreSQL): a stage sends what
may go as soon as it may (a workspace right after its lead, not after a whole pass over every type), in
collections of up to 200 records, and wakes the other stages when it has sent something. Every record
still waits for the records its lookups point at (`salesforce.claiming.claim_batch`), so the order Account → Lead →
lead conversion → Contact → Workspace__c holds per record.

The drainer looks at the dirty flag every 50 ms while it runs. It gives its worker back once nothing
has happened for a moment — only if nothing was recorded meanwhile (the release is conditional on the
flag), so no request is lost between its last look and its exit — and it hands over to a fresh task
after SALESFORCE_DRAIN_SECONDS so no task outlives the cluster's timeout. The 1-minute schedule
remains as a safety net (a lost task, a drainer killed mid-run: its lease expires).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import connection, connections
from django.db.models import Q
from django.utils import timezone

from salesforce.adapter import SalesforceClient, shared_client
from salesforce.claiming import due_types
from salesforce.models import OutboxItem, SyncControl
from salesforce.sending import DrainReport, sync_control, sync_paused, track_usage
from salesforce.worker import ORDER, drainer_name, outbox_drain_step
from workspaces.actors import acting_as_system

logger = logging.getLogger(__name__)

LEASE = timedelta(seconds=60)  # renewed while the drainer lives; a killed drainer's lapses within a minute
RENEW_SECONDS = 10.0
POLL_SECONDS = 0.05  # how often the drainer reads the dirty flag
RETRY_POLL_SECONDS = 0.5  # how often the drainer looks for retries that came due
RETRY_MARGIN_SECONDS = 0.02  # a retry's wake-up comes this much after it is due (clocks, rounding)
LANE_POLL_SECONDS = 5.0  # an idle lane looks anyway this often
LANES = {"Lead": 3, "LeadConversion": 4, "Workspace__c": 3}
#: Whom a stage wakes when it has sent something: the types whose records may have waited on it. (A
#: deletion waiting for its target looks again within LANE_POLL_SECONDS.)
WAKES = {
    "Account": ("LeadConversion", "Contact", "Workspace__c", "Task"),
    "Lead": ("LeadConversion", "Workspace__c", "Task"),
    "LeadConversion": ("Account", "LeadConversion", "Contact", "Workspace__c", "Task"),  # colleagues onto its account
    "Contact": ("Workspace__c", "Task"),
}
IDLE_SECONDS = 2.0  # nothing to send for this long: give the worker back
LINGER = timedelta(seconds=10)  # ... unless a retry comes due within this
QUEUED_STALE = timedelta(seconds=60)  # a queued drain not started by then is presumed lost


def drain_request() -> bool:
    """Make sure a drainer will send what was just committed; True if this call enqueued a drain task.

    Cheap when a drainer runs or one is queued: two conditional UPDATEs of the control row that match
    nothing (and so lock nothing).
    """
    if settings.SALESFORCE_SYNC == "off":
        return False
    control = SyncControl.objects.filter(pk=1)
    if not control.filter(drain_dirty=False).update(drain_dirty=True) and not control.exists():
        sync_control()
        control.update(drain_dirty=True)
    now = timezone.now()
    claimed = (
        control.filter(Q(drain_lease_expires_at__isnull=True) | Q(drain_lease_expires_at__lt=now))
        .filter(Q(drain_enqueued_at__isnull=True) | Q(drain_enqueued_at__lt=now - QUEUED_STALE))
        .filter(Q(paused_until__isnull=True) | Q(paused_until__lte=now))
        .update(drain_enqueued_at=now)
    )
    if claimed:
        _enqueue_drain()
    return bool(claimed)


_brokers: dict[int, object] = {}


def _enqueue_drain() -> None:
    """Queue the drain task (one broker per process: django-q2 would open a connection per call)."""
    from django_q.brokers import get_broker
    from django_q.tasks import async_task

    broker = _brokers.get(os.getpid())
    if broker is None:
        _brokers.clear()
        broker = _brokers[os.getpid()] = get_broker()
    # Its own timeout: the budget, plus the calls in flight when it ends (each at most the call timeout).
    timeout = int(drain_budget() + 4 * settings.SALESFORCE_TIMEOUT_SECONDS + 10)
    async_task("salesforce.tasks.drain_outbox", broker=broker, q_options={"group": "sync", "timeout": timeout})


def drain_budget() -> float:
    return float(settings.SALESFORCE_DRAIN_SECONDS)


# --- the drainer -----------------------------------------------------------------------------------


@dataclass
class DrainRun:
    """What one drain task did: why it ended, and the sums of its stages' reports."""

    ended: str = ""  # idle | budget | paused | busy (another drainer holds the lease) | off | error
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # of this process, all stage threads included (the task has the worker to itself)
    report: DrainReport = field(default_factory=DrainReport)
    handed_over: bool = False


def drain_run(
    *, budget: float | None = None, client_factory: Callable[[], SalesforceClient] = shared_client
) -> DrainRun:
    """Hold the drainer lease and send until idle, paused or out of budget; then let go (see the module)."""
    run, t0, cpu0 = DrainRun(), time.monotonic(), time.process_time()
    if settings.SALESFORCE_SYNC == "off":
        run.ended = "off"
        return run
    me = drainer_name()
    if not _lease_take(me):
        run.ended = "busy"
        return run
    released, client = False, None
    try:
        if sync_paused(run.report):
            run.ended = "paused"
            return run
        client = client_factory() if settings.SALESFORCE_SYNC == "live" else None
        drainer = _Drainer(client, me, deadline=t0 + (drain_budget() if budget is None else budget))
        run.ended, released = drainer.run()
        run.report = drainer.total()
        if client is not None:
            track_usage(client)
    finally:
        if not released:
            _settle(client)
            _lease_release(me)
        run.seconds = round(time.monotonic() - t0, 3)
        run.cpu_seconds = round(time.process_time() - cpu0, 3)
    if run.ended == "budget" and _work_left():
        run.handed_over = drain_request()  # a fresh task carries on; this one must not outlive its timeout
    return run


class _Drainer:
    """The stages of one drainer and the loop that watches the dirty flag and the clock.

    On PostgreSQL each object type has its own thread(s) ("lanes"). SQLite takes one writer at a time (and
    its test database, in memory, no concurrent connections at all), so there the stages take turns in the
    watching loop itself.
    """

    def __init__(self, client: SalesforceClient | None, worker: str, *, deadline: float) -> None:
        self.client, self.worker, self.deadline = client, worker, deadline
        self.threaded = connection.vendor != "sqlite"
        self.cond = threading.Condition()
        self.generation = dict.fromkeys(ORDER, 0)  # per stage, bumped whenever it may have new work
        self.sending = dict.fromkeys(ORDER, 0)  # lanes of each stage inside a send
        self.hold = False  # no new sends: the drainer is about to let go
        self.last_work = time.monotonic()
        self.stop = threading.Event()
        self.failed = False
        lanes = [(object_type, lane) for object_type in ORDER for lane in range(_lanes(object_type))]
        self.reports = {lane: DrainReport() for lane in lanes}  # one per thread

    def run(self) -> tuple[str, bool]:
        """Return (why it ended, whether the lease was released already)."""
        if time.monotonic() >= self.deadline:
            return "budget", False  # out of budget before it began: no lane starts a send
        threads = self._start() if self.threaded else []
        try:
            while True:
                ended = self._watch()
                if ended != "idle":
                    return ended, False
                if self._let_go():
                    return "idle", True
                self.poke()  # something was recorded after the last look: carry on
        finally:
            self._halt(threads)

    def _let_go(self) -> bool:
        """Hold the lanes, wait for sends in flight, then release the lease only if nothing was recorded
        since the last look (else carry on). No lane starts a send after the release."""
        with self.cond:
            self.hold = True
            while any(self.sending.values()):
                self.cond.wait(POLL_SECONDS)
        _settle(self.client)
        if _lease_release(self.worker, only_if_clean=True):
            return True
        with self.cond:
            self.hold = False
        return False

    def _watch(self) -> str:
        next_renew = time.monotonic() + RENEW_SECONDS
        next_retry_look = 0.0
        seen = None  # turns (SQLite): the generations last looked at
        while True:
            if self.stop.is_set():
                return "error" if self.failed else "paused"
            now = time.monotonic()
            if now >= self.deadline:
                return "budget"
            if _take_dirty():
                self.poke(tuple(due_types()) if self.threaded else ORDER)  # wake only stages with work
            elif now >= next_retry_look:
                next_retry_look = now + RETRY_POLL_SECONDS
                if _retry_due():
                    self.poke(tuple(due_types()) if self.threaded else ORDER)
                elif self._idle(now) and not _retry_due_soon():
                    return "idle"
            if not self.threaded and seen != sum(self.generation.values()):
                seen = sum(self.generation.values())
                self._turns()
                continue
            if now >= next_renew:
                _lease_renew(self.worker)
                next_renew = now + RENEW_SECONDS
            time.sleep(POLL_SECONDS)

    def _idle(self, now: float) -> bool:
        with self.cond:
            return not any(self.sending.values()) and now - self.last_work >= IDLE_SECONDS

    def poke(self, object_types: tuple[str, ...] = ORDER) -> None:
        """There may be new work for these stages (all: something was recorded)."""
        with self.cond:
            for object_type in object_types:
                self.generation[object_type] += 1
            self.last_work = time.monotonic()
            self.cond.notify_all()

    def _start(self) -> list[threading.Thread]:
        threads = [
            threading.Thread(target=self._stage, args=lane, name=f"drain-{lane[0]}-{lane[1]}", daemon=True)
            for lane in self.reports
        ]
        for thread in threads:
            thread.start()
        return threads

    def _halt(self, threads: list[threading.Thread]) -> None:
        self.stop.set()
        self.poke()
        for thread in threads:
            thread.join()

    def _stage(self, object_type: str, lane: int) -> None:
        """Send this type whenever some of it may go; after an empty look, wait for a poke (or a while).

        A second lane only looks while the first is inside a call: it takes what became ready meanwhile.
        """
        seen = None
        try:
            with acting_as_system():
                while not self.stop.is_set():
                    with self.cond:
                        while not self.stop.is_set() and (
                            self.hold
                            or seen == self.generation[object_type]
                            or (lane > 0 and not self.sending[object_type])
                        ):
                            if not self.cond.wait(LANE_POLL_SECONDS) and not self.hold:
                                break  # a while without a poke: look anyway (a lapsed lease, say)
                        if self.stop.is_set():
                            break
                        seen = self.generation[object_type]
                        self.sending[object_type] += 1
                    try:
                        sent = self._send(object_type, lane)
                    finally:
                        with self.cond:
                            self.sending[object_type] -= 1
                            self.cond.notify_all()
                    self._wake_for_retries(object_type, lane)
                    self._wake_released(object_type, lane)
                    if sent:  # what waited on these records may go now; a full batch may have left more
                        full = sent >= settings.SALESFORCE_BATCH_SIZE
                        self.poke(WAKES.get(object_type, ()) + ((object_type,) if full else ()))
        except Exception:
            logger.exception("Salesforce drain stage %s failed", object_type)
            self.failed = True
            self.stop.set()
        finally:
            connections.close_all()  # this thread's own connections

    def _wake_for_retries(self, object_type: str, lane: int) -> None:
        """A send that left rows to retry, or held back (salesforce.worker._without_held), wakes its stage when
        the soonest comes due: a first retry is due within a quarter second, sooner than the retry poll,
        and a held row is not in that poll at all."""
        report = self.reports[object_type, lane]
        if report.retry_at is None:
            return
        delay, report.retry_at = max(0.0, report.retry_at - time.monotonic()) + RETRY_MARGIN_SECONDS, None
        timer = threading.Timer(delay, self.poke, args=((object_type,),))
        timer.daemon = True
        timer.start()

    def _wake_released(self, object_type: str, lane: int) -> None:
        """A send that released held records a pilot record depends on (salesforce.worker._pilot_gate) wakes
        their stages: they go first, then the record."""
        report = self.reports[object_type, lane]
        if report.released_types:
            released, report.released_types = tuple(report.released_types), set()
            self.poke(released)

    def _turns(self) -> None:
        """Every stage in order, each while it finds something to send (SQLite: in this thread)."""
        sent = 0
        try:
            with acting_as_system():
                for object_type in ORDER:
                    while not self.stop.is_set() and (n := self._send(object_type, 0)):
                        sent += n
        except Exception:
            logger.exception("Salesforce drain failed")
            self.failed = True
            self.stop.set()
        if sent:
            self.poke()

    def _send(self, object_type: str, lane: int) -> int:
        report = self.reports[object_type, lane]
        try:
            # Each lane leases rows under its own name: a claim recognises its rows by that name.
            return outbox_drain_step(object_type, self.client, f"{self.worker}#{object_type}{lane}", report)
        finally:
            if report.paused:
                self.stop.set()

    def total(self) -> DrainReport:
        total = DrainReport()
        for report in self.reports.values():
            total.sent += report.sent
            total.synced += report.synced
            total.failed += report.failed
            total.recorded += report.recorded
            total.released += report.released
            total.calls += report.calls
            total.paused = total.paused or report.paused
            for object_type, count in report.by_type.items():
                total.by_type[object_type] = total.by_type.get(object_type, 0) + count
        return total


def _settle(client: SalesforceClient | None) -> None:
    """Before the lease goes (and another process may send): wait for hedged copies still out, so no
    drainer sends a newer version of a record while an older one may still land."""
    if client is not None and not client.settle():
        logger.warning("a hedged Salesforce call was still out when the drainer let go")


def _lanes(object_type: str) -> int:
    """Threads per type. Three where records wait on each other's calls: a record that becomes ready while
    its stage's calls are in flight (250 ms; a conversion's convertLead and stamp, twice that) goes at
    once on another lane instead of after them (with two, the freshness benchmark's p99 waited for one
    at 50 events/s). Four for conversions: with faults, a conversion's retry (due within a quarter
    second) waited up to a second for a free lane behind three two-call sends."""
    return LANES.get(object_type, 1)


# --- the control row -------------------------------------------------------------------------------


def _lease_take(worker: str) -> bool:
    """Become the drainer. A previous drainer that never let go died (its lease lapsed): the outbox rows it
    had claimed are let go at once rather than after their own lease (minutes)."""
    previous = sync_control().drain_owner
    now = timezone.now()
    taken = (
        SyncControl.objects.filter(pk=1)
        .filter(Q(drain_lease_expires_at__isnull=True) | Q(drain_lease_expires_at__lt=now))
        .update(drain_owner=worker, drain_lease_expires_at=now + LEASE, drain_enqueued_at=None, drain_dirty=False)
    )
    if taken and previous and previous != worker:
        OutboxItem.objects.filter(Q(lease_owner=previous) | Q(lease_owner__startswith=f"{previous}#")).update(
            lease_owner="", lease_expires_at=None
        )
    return bool(taken)


def _lease_renew(worker: str) -> None:
    SyncControl.objects.filter(pk=1, drain_owner=worker).update(drain_lease_expires_at=timezone.now() + LEASE)


def _lease_release(worker: str, *, only_if_clean: bool = False) -> bool:
    """Let go of the lease; with `only_if_clean`, only if nothing was recorded since the last look."""
    mine = SyncControl.objects.filter(pk=1, drain_owner=worker)
    if only_if_clean:
        mine = mine.filter(drain_dirty=False)
    return bool(mine.update(drain_owner="", drain_lease_expires_at=None))


def _take_dirty() -> bool:
    return bool(SyncControl.objects.filter(pk=1, drain_dirty=True).update(drain_dirty=False))


def _retry_due() -> bool:
    return OutboxItem.objects.filter(state=OutboxItem.State.RETRY, next_attempt_at__lte=timezone.now()).exists()


def _retry_due_soon() -> bool:
    now = timezone.now()
    return OutboxItem.objects.filter(
        state=OutboxItem.State.RETRY, next_attempt_at__gt=now, next_attempt_at__lte=now + LINGER
    ).exists()


def _work_left() -> bool:
    return (
        SyncControl.objects.filter(pk=1, drain_dirty=True).exists()
        or OutboxItem.objects.filter(state__in=(OutboxItem.State.PENDING, OutboxItem.State.RETRY)).exists()
    )
