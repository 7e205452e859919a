"""The drain trigger: one queued task for a burst of commits, one drainer at a time, nothing lost between
a drainer's last look and its exit, a record in Salesforce within moments of its commit."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.signing import SignedPackage

from processing.pipeline import workspace_process
from processing.tasks import process_workspaces
from salesforce import drain
from salesforce.drain import drain_request, drain_run
from salesforce.models import OutboxItem, SyncControl
from tests.events.helpers import T0, lifecycle_event, queued_tasks, store

# The drainer's stages are threads with their own connections: they must see committed rows.
pytestmark = pytest.mark.django_db(transaction=True)


def trial(workspace_id: str, email: str = "dana@gmail.com"):
    return lifecycle_event(f"{workspace_id}_trial", "trial.started", workspace_id=workspace_id, email=email)


def converted(workspace_id: str, email: str = "dana@gmail.com"):
    return lifecycle_event(
        f"{workspace_id}_paid", "subscription.converted", workspace_id=workspace_id, email=email, at=T0 + timedelta(3)
    )


# A drainer in a thread beside the test's own writes: SQLite's in-memory test database takes no
# concurrent connections (its drainer takes turns in one thread; production SQLite is a WAL file).
beside_the_test = pytest.mark.skipif(connection.vendor == "sqlite", reason="concurrent connections: PostgreSQL")


def drain_in_thread(result: dict) -> None:
    """What the queued task does in its worker, here in a thread of the test process."""
    try:
        result["run"] = drain_run(budget=30)
    finally:
        connections.close_all()


def queued_drains() -> int:
    """Drain tasks waiting in the ORM broker's queue (processing tasks queued by `store` aside)."""
    return len(queued_tasks("salesforce.tasks.drain_outbox"))


def control() -> SyncControl:
    return SyncControl.objects.get(pk=1)


@pytest.fixture
def dry_run(settings):
    settings.SALESFORCE_SYNC = "dry_run"


def test_a_burst_of_commits_queues_one_drain(dry_run):
    assert [drain_request() for _ in range(5)] == [True, False, False, False, False]
    assert queued_drains() == 1
    assert control().drain_dirty is True


def test_processing_rings_for_a_drain_after_its_commit(dry_run):
    store(trial("ws_1"), trial("ws_2", "lee@gmail.com"))
    process_workspaces(["ws_1"])
    process_workspaces(["ws_2"])
    assert queued_drains() == 1
    (task,) = [t for t in queued_tasks("salesforce.tasks.drain_outbox") if t["group"] == "sync"]
    assert task["timeout"] >= drain.drain_budget(), "its own timeout covers its budget"


def test_off_queues_nothing(settings):
    settings.SALESFORCE_SYNC = "off"
    assert drain_request() is False
    assert queued_drains() == 0


def test_nothing_is_queued_while_a_drainer_holds_the_lease(dry_run):
    assert drain._lease_take("drainer-a")
    assert drain_request() is False, "the running drainer sees the dirty flag"
    assert drain_run().ended == "busy", "a second drainer does not start"
    assert drain._lease_release("drainer-a", only_if_clean=True) is False, "dirty: it must look again"
    assert drain._take_dirty() is True
    assert drain._lease_release("drainer-a", only_if_clean=True) is True
    assert drain_request() is True
    assert queued_drains() == 1


def test_a_queued_drain_presumed_lost_is_queued_again(dry_run):
    assert drain_request() is True
    SyncControl.objects.update(drain_enqueued_at=timezone.now() - drain.QUEUED_STALE - timedelta(seconds=1))
    assert drain_request() is True
    assert queued_drains() == 2


def test_an_expired_lease_does_not_block_the_next_drain(dry_run):
    assert drain._lease_take("killed-drainer")
    SyncControl.objects.update(drain_lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert drain_request() is True


def test_a_dead_drainers_claims_are_let_go_by_the_next_drainer(dry_run, monkeypatch):
    """SIGKILLed mid-call: its lease lapses within a minute, and the rows it had claimed go at once."""
    monkeypatch.setattr(drain, "IDLE_SECONDS", 0.2)
    store(trial("ws_1"))
    workspace_process(workspace_key="ws_1")
    assert drain._lease_take("killed-drainer")
    OutboxItem.objects.update(lease_owner="killed-drainer", lease_expires_at=timezone.now() + timedelta(minutes=5))
    SyncControl.objects.update(drain_lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert drain_run().ended == "idle"
    assert set(OutboxItem.objects.values_list("state", flat=True)) == {"dry_run"}


def test_no_drain_is_queued_while_the_sync_is_paused(dry_run):
    SyncControl.objects.update_or_create(pk=1, defaults={"paused_until": timezone.now() + timedelta(minutes=5)})
    assert drain_request() is False
    assert queued_drains() == 0


def test_the_drainer_records_what_is_due_and_lets_go_when_idle(dry_run, monkeypatch):
    monkeypatch.setattr(drain, "IDLE_SECONDS", 0.2)
    store(trial("ws_1"))
    workspace_process(workspace_key="ws_1")
    run = drain_run()
    assert run.ended == "idle"
    assert set(OutboxItem.objects.values_list("state", flat=True)) == {"dry_run"}
    assert control().drain_owner == "" and control().drain_lease_expires_at is None
    assert drain_request() is True, "released: the next commit queues a drain"


def test_a_drain_out_of_budget_hands_over_to_a_fresh_task(dry_run):
    store(trial("ws_1"))
    workspace_process(workspace_key="ws_1")
    run = drain_run(budget=0)
    assert run.ended == "budget" and run.handed_over is True
    assert queued_drains() == 1
    assert control().drain_owner == "", "released before the next one starts"
    assert OutboxItem.objects.filter(state="pending").exists(), "left for the next drainer"


def test_a_drain_out_of_budget_with_nothing_left_hands_over_nothing(dry_run):
    assert drain_run(budget=0).ended == "budget"
    assert queued_drains() == 0


@beside_the_test
def test_a_workspace_reaches_salesforce_within_moments_of_its_commit(salesforce, monkeypatch):
    """250 ms a call: the drainer sends the lead, then the workspace, each as soon as it may go."""
    salesforce.faults.latency(0.25)
    monkeypatch.setattr(drain, "IDLE_SECONDS", 1.0)
    result = {}
    drainer = threading.Thread(target=drain_in_thread, args=(result,))
    assert drain._lease_take("warming-up") and drain._lease_release("warming-up")
    drainer.start()
    time.sleep(0.3)  # the drainer is up and idle
    store(trial("ws_1"))
    workspace_process(workspace_key="ws_1")
    committed = time.monotonic()
    drain_request()
    # No timed assertion (speed is bench/salesforce_sync.py's): the running drainer must send it by itself,
    # long before the safety-net schedule would, with exactly the two calls it needs.
    while salesforce.store.find_one("Workspace__c", Workspace_ID__c="ws_1") is None:
        assert time.monotonic() - committed < 30, "the running drainer did not send it"
        time.sleep(0.01)
    drainer.join(timeout=30)
    calls = [(e.kind, e.object_name) for e in salesforce.requests_log.api_calls()]
    assert calls == [("collection_upsert", "Lead"), ("collection_upsert", "Workspace__c")]
    assert result["run"].ended == "idle"
    assert queued_drains() == 0, "the running drainer took it: no task queued"


@beside_the_test
def test_work_recorded_while_the_drainer_runs_is_sent_by_it(salesforce, monkeypatch):
    """Commits keep coming while the drainer works: it sends them all, in order, then lets go."""
    salesforce.faults.latency(0.1)
    monkeypatch.setattr(drain, "IDLE_SECONDS", 1.5)
    result = {}
    for n in range(6):
        store(trial(f"ws_{n}", f"p{n}@gmail.com"))
        workspace_process(workspace_key=f"ws_{n}")
        assert drain_request() is (n == 0), "one drain queued for the whole burst"
        if n == 0:  # the queued task starts
            drainer = threading.Thread(target=drain_in_thread, args=(result,))
            drainer.start()
    store(converted("ws_0", "p0@gmail.com"))
    workspace_process(workspace_key="ws_0")
    drain_request()
    drainer.join(timeout=30)
    assert result["run"].ended == "idle"
    assert set(OutboxItem.objects.values_list("state", flat=True)) == {"synced"}
    assert salesforce.store.count("Workspace__c") == 6
    assert salesforce.store.find_one("Workspace__c", Workspace_ID__c="ws_0")["Self_Serve_Status__c"] == "Paid"
    assert salesforce.store.count("Contact") == 1 and salesforce.store.count("Account") == 1
    assert queued_drains() == 1


# --- the Redis broker ------------------------------------------------------------------------------


@pytest.fixture
def redis_broker(tmp_path, monkeypatch):
    """django-q2 configured for a redis-server of our own on a free port (skipped without redis-server)."""
    from django_q.conf import Conf

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    try:
        server = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    except FileNotFoundError:
        pytest.skip("redis-server is not installed")
    monkeypatch.setattr(Conf, "ORM", None)
    monkeypatch.setattr(Conf, "REDIS", f"redis://127.0.0.1:{port}/0")
    drain._brokers.clear()
    try:
        broker = get_broker()
        for _ in range(50):
            try:
                broker.ping()
                break
            except Exception:
                time.sleep(0.1)
        yield broker
    finally:
        drain._brokers.clear()
        server.terminate()
        server.wait(timeout=10)


def test_a_burst_queues_one_drain_on_the_redis_broker_too(dry_run, redis_broker, monkeypatch):
    monkeypatch.setattr(drain, "IDLE_SECONDS", 0.2)
    store(trial("ws_1"), trial("ws_2", "lee@gmail.com"))
    process_workspaces(["ws_1"])
    process_workspaces(["ws_2"])
    queued = [SignedPackage.loads(redis_broker.dequeue()[0][1]) for _ in range(redis_broker.queue_size())]
    assert [task["func"] for task in queued].count("salesforce.tasks.drain_outbox") == 1
    from salesforce.tasks import drain_outbox

    assert drain_outbox()["ended"] == "idle"
    assert set(OutboxItem.objects.values_list("state", flat=True)) == {"dry_run"}
    assert drain_request() is True
    assert SignedPackage.loads(redis_broker.dequeue()[0][1])["func"] == "salesforce.tasks.drain_outbox"
