"""Trigger actions as dispatches: planned in the firing's transaction, rendered from templates, sent after
commit through the channel's transport, retried with backoff, failures recorded, never sent twice."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.core.cache import cache
from django.utils import timezone

from emulators.product_webhook import ProductWebhookSink
from failures.models import ErrorKind
from messaging import registry
from messaging.delivery import dispatch_send, dispatches_send_due
from messaging.models import Dispatch
from messaging.registry import Message, Transport, TransportError
from tests.events.helpers import queued_tasks
from tests.factories import WorkspaceFactory
from tests.triggers.conftest import event, make_trigger
from triggers.services import ENABLED_CACHE_KEY, triggers_evaluate

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_quiet_hours_or_caps(settings) -> None:
    settings.TRIGGERS_QUIET_HOURS = None
    settings.TRIGGERS_WORKSPACE_CAP = None
    settings.TRIGGERS_PERSON_CAP = None
    cache.delete(ENABLED_CACHE_KEY)


class Flaky(Transport):
    """A channel that refuses the first `failures` messages (retryable or not), then takes them."""

    kind = "test_flaky"
    label = "Flaky"
    failures = 0
    retryable = True
    sent: list[Message] = []

    def send(self, message: Message) -> None:
        if Flaky.failures:
            Flaky.failures -= 1
            raise TransportError("503 from the channel", retryable=Flaky.retryable)
        Flaky.sent.append(message)


@pytest.fixture
def flaky():
    registry.transport_register(Flaky)
    Flaky.failures, Flaky.retryable, Flaky.sent = 0, True, []
    yield Flaky
    registry._transports.pop(Flaky.kind, None)


def fire(actions, *, workspace="ws_1"):
    WorkspaceFactory(workspace_id=workspace, email="dana@acme.io", name="Acme")
    make_trigger("welcome", {"kind": "event", "event": {"type": "trial.started"}}, actions=actions)
    now = timezone.now()
    [firing] = triggers_evaluate(workspace_key=workspace, new_events=[event(workspace, "trial.started", now)], now=now)
    return firing


def test_a_firing_plans_one_rendered_dispatch_per_action_and_sends_them_after_commit(
    django_capture_on_commit_callbacks,
):
    actions = [{"channel": "email", "template": "welcome", "params": {"cta_url": "https://app.example/go"}}]
    with django_capture_on_commit_callbacks(execute=True):
        firing = fire(actions)

    [row] = Dispatch.objects.all()
    assert (row.key, row.source, row.source_id) == (f"firing-{firing.pk}-email-0", "firing", firing.pk)
    assert (row.channel, row.recipient, row.status, row.subject) == (
        "email", "dana@acme.io", "pending", "Welcome to your trial, Acme"
    )  # fmt: skip
    assert "https://app.example/go" in row.text and 'href="https://app.example/go"' in row.html
    [task] = queued_tasks("messaging.tasks.send_dispatches")
    assert task["args"] == ([row.key],)

    from messaging.tasks import send_dispatches

    assert send_dispatches(*task["args"])["sent"] == 1
    [sent] = mail.outbox
    assert (sent.to, sent.subject) == (["dana@acme.io"], "Welcome to your trial, Acme")
    assert sent.alternatives[0][1] == "text/html" and "Get started" in sent.alternatives[0][0]
    row.refresh_from_db()
    assert (row.status, row.attempts, row.sent_at is not None) == ("sent", 1, True)
    assert send_dispatches([row.key])["sent"] == 0  # sent rows are not due: nothing goes out twice
    assert len(mail.outbox) == 1


def test_a_replayed_firing_plan_adds_no_second_dispatch():
    from triggers.deliveries import firing_dispatches_plan

    firing = fire([{"channel": "email", "template": "welcome"}])
    firing_dispatches_plan(firing)
    assert Dispatch.objects.count() == 1


def test_a_refused_send_is_retried_with_backoff_and_recorded_then_sent(flaky, settings):
    settings.DISPATCH_RETRY_BASE_SECONDS = 60
    flaky.failures = 2
    fire([{"channel": "test_flaky", "template": "welcome"}])
    [row] = Dispatch.objects.all()
    now = timezone.now()

    assert dispatch_send(row.pk, now=now) == "failed"
    row.refresh_from_db()
    assert (row.status, row.attempts, row.next_attempt_at) == ("failed", 1, now + timedelta(seconds=60))
    assert "503 from the channel" in row.last_error
    assert ErrorKind.objects.get(source="delivery").count == 1
    assert dispatches_send_due(now=now + timedelta(seconds=59)).failed == 0  # not due yet
    assert dispatches_send_due(now=now + timedelta(seconds=60)).failed == 1
    row.refresh_from_db()
    assert row.next_attempt_at == now + timedelta(seconds=60) + timedelta(seconds=120)
    assert dispatches_send_due(now=now + timedelta(hours=1)).sent == 1
    assert [message.key for message in flaky.sent] == [row.key]


def test_a_permanent_refusal_or_the_last_attempt_gives_up(flaky, settings):
    flaky.failures, flaky.retryable = 1, False
    fire([{"channel": "test_flaky", "template": "welcome"}])
    [row] = Dispatch.objects.all()
    assert dispatch_send(row.pk) == "dead"

    settings.DISPATCH_MAX_ATTEMPTS = 1
    flaky.failures, flaky.retryable = 1, True
    Dispatch.objects.filter(pk=row.pk).update(status="pending", attempts=0, next_attempt_at=timezone.now())
    assert dispatch_send(row.pk) == "dead"
    assert flaky.sent == []


def test_a_missing_template_is_never_sent_with_made_up_words():
    fire([{"channel": "email", "template": "no_such_template"}])
    [row] = Dispatch.objects.all()
    assert row.status == "dead" and "triggers/no_such_template.subject.txt" in row.last_error
    assert ErrorKind.objects.filter(source="delivery", kind="trigger template missing").exists()
    assert dispatches_send_due().sent == 0


def test_a_channel_that_is_off_skips_the_row(settings):
    settings.PRODUCT_WEBHOOK_URL = ""
    fire([{"channel": "in_app", "template": "welcome"}])
    [row] = Dispatch.objects.all()
    assert dispatch_send(row.pk) == "skipped"
    row.refresh_from_db()
    assert row.status == "skipped" and row.last_error


def test_an_in_app_action_reaches_the_product_with_the_firing_and_a_stable_webhook_id(
    product_webhook: ProductWebhookSink,
):
    firing = fire([{"channel": "in_app", "template": "welcome", "params": {"cta_url": "https://app.example/go"}}])
    assert dispatches_send_due().sent == 1
    Dispatch.objects.update(status="pending", next_attempt_at=timezone.now())  # a retry after a lost answer
    dispatches_send_due()

    [received] = product_webhook.received  # the product deduplicates by webhook-id
    assert received.webhook_id == f"firing-{firing.pk}-in_app-0"
    assert received.payload["data"] | {"message": None} == {
        "workspace_id": "ws_1", "user_email": "dana@acme.io", "trigger": "welcome", "firing_id": str(firing.pk),
        "message": None,
    }  # fmt: skip
    assert received.payload["data"]["message"]["cta_url"] == "https://app.example/go"


def test_the_firings_of_one_transaction_ring_one_send_task(django_capture_on_commit_callbacks):
    actions = [{"channel": "email", "template": "welcome"}]
    with django_capture_on_commit_callbacks(execute=True):
        fire(actions, workspace="ws_1")
        WorkspaceFactory(workspace_id="ws_2", email="eve@acme.io")
        now = timezone.now()
        triggers_evaluate(workspace_key="ws_2", new_events=[event("ws_2", "trial.started", now)], now=now)

    [task] = queued_tasks("messaging.tasks.send_dispatches")
    assert task["args"] == (sorted(Dispatch.objects.values_list("key", flat=True)),)
    assert len(task["args"][0]) == 2
