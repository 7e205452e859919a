"""Two senders on one due dispatch at once send it once (PostgreSQL: a real race between connections)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, connections
from django.utils import timezone

from messaging import registry
from messaging.delivery import dispatch_send, dispatches_send_due
from messaging.models import Dispatch
from messaging.registry import Message, Transport

pytestmark = pytest.mark.django_db(transaction=True)


class Slow(Transport):
    """Takes a while to send, so the second sender arrives while the first is still sending."""

    kind = "test_slow"
    label = "Slow"
    sent: list[str] = []
    lock = threading.Lock()

    def send(self, message: Message) -> None:
        time.sleep(0.2)
        with Slow.lock:
            Slow.sent.append(message.key)


@pytest.fixture(autouse=True)
def slow():
    if connection.vendor != "postgresql":
        pytest.skip("SQLite serialises writers on its file lock; PostgreSQL proves the race")
    registry.transport_register(Slow)
    Slow.sent = []
    yield
    registry._transports.pop(Slow.kind, None)


def at_once(n, work):
    barrier = threading.Barrier(n)

    def run(i):
        try:
            barrier.wait(timeout=10)
            return work(i)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n)))


def dispatch(key: str) -> Dispatch:
    return Dispatch.objects.create(
        key=key, source="firing", source_id=1, channel="test_slow", recipient="a@acme.io", text="hi",
        next_attempt_at=timezone.now(),
    )  # fmt: skip


def test_two_senders_of_one_row_send_it_once():
    row = dispatch("firing-1-test_slow-0")
    outcomes = at_once(2, lambda i: dispatch_send(row.pk))
    assert sorted(outcomes, key=str) == [None, "sent"]
    assert Slow.sent == [row.key]


def test_four_sweeps_over_many_rows_send_each_once():
    rows = [dispatch(f"firing-{i}-test_slow-0") for i in range(6)]
    at_once(4, lambda i: dispatches_send_due())
    assert sorted(Slow.sent) == sorted(row.key for row in rows)
    assert set(Dispatch.objects.values_list("status", flat=True)) == {"sent"}
