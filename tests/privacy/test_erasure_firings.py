"""Erasure and export reach the trigger engine: firings (recipient, explanation values) and the messages they
planned (recipient, rendered subject, text and HTML) are in the export and scrubbed by the erasure; nothing
more is sent to the person (unsent messages skipped, deferred firings suppressed, new firings find nobody);
a bystander's firings are untouched."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from django.core import serializers
from django.core.cache import cache

from events.models import Event
from messaging.models import Dispatch, Unsubscribe
from privacy.erasure import NOT_SENT, person_erase
from privacy.export import person_export
from privacy.identity import is_placeholder
from processing.pipeline import workspace_process
from tests.conftest import signed_headers
from tests.privacy.conftest import CANARY_NORMALISED, NAMES, OTHER, canary_events, database_dump
from triggers.models import Firing, Trigger
from triggers.services import ENABLED_CACHE_KEY, trigger_save, triggers_evaluate
from triggers.timers import timers_fire_due
from workspaces.models import Workspace

pytestmark = pytest.mark.django_db

NIGHT = datetime(2026, 11, 28, 23, 30, tzinfo=UTC)
STARTED = {"kind": "event", "event": {"type": "trial.started"}}
CONVERTED = {"kind": "event", "event": {"type": "subscription.converted"}}
WHERE = [{"path": "user_email", "op": "exists", "value": True}, {"path": "feature", "op": "==", "value": "export"}]
EXPORTS = {"kind": "event", "event": {"type": "usage.recorded", "where": WHERE}}
EMAIL = [{"channel": "email", "template": "welcome"}]


@pytest.fixture(autouse=True)
def no_caps(settings) -> Iterator[None]:
    settings.TRIGGERS_WORKSPACE_CAP = None
    settings.TRIGGERS_PERSON_CAP = None
    settings.TRIGGERS_QUIET_HOURS = None
    cache.delete(ENABLED_CACHE_KEY)
    yield
    cache.delete(ENABLED_CACHE_KEY)


def trigger(key: str, when: dict, actions: list, **fields) -> Trigger:
    return trigger_save(trigger=Trigger(key=key, name=key.replace("_", " "), when=when, actions=actions, **fields))


def decide(workspace: str, types: tuple[str, ...], keys: tuple[str, ...], now: datetime) -> list[Firing]:
    events = Event.objects.filter(workspace_key=workspace, type__in=types)
    chosen = list(Trigger.objects.filter(key__in=keys))
    return triggers_evaluate(workspace_key=workspace, new_events=events, now=now, triggers=chosen)


@pytest.fixture
def fired(send_webhook, settings) -> dict[str, Firing]:
    """The canary and a bystander through the webhook and processing; then their trial welcome (an email
    to them), a team note about the canary (Slack, naming the workspace), an export seen with their
    address in its explanation, and a conversion note deferred by quiet hours."""
    for body in [*canary_events(CANARY_NORMALISED), *canary_events(OTHER, "ws_other", ("Olaf", "Berg"))]:
        assert send_webhook(body, headers=signed_headers(body)).status_code == 202
    for key in ("ws_canary", "ws_other"):
        workspace_process(workspace_key=key)
    trigger("welcome", STARTED, EMAIL)
    trigger("team_note", STARTED, [{"channel": "slack", "template": "escalation"}], audience="team", team="cs")
    trigger("export_seen", EXPORTS, [{"channel": "slack", "template": "escalation"}], audience="team", team="cs")
    trigger("paid_thanks", CONVERTED, EMAIL)
    now = Workspace.objects.get(workspace_id="ws_canary").trial_started_at + timedelta(hours=1)
    firings = {}
    for workspace in ("ws_canary", "ws_other"):
        for firing in decide(
            workspace, ("trial.started", "usage.recorded"), ("welcome", "team_note", "export_seen"), now
        ):
            firings[f"{firing.trigger.key}:{workspace}"] = firing
    settings.TRIGGERS_QUIET_HOURS = ("21:00", "08:00")
    [firings["paid_thanks:ws_canary"]] = decide("ws_canary", ("subscription.converted",), ("paid_thanks",), NIGHT)
    settings.TRIGGERS_QUIET_HOURS = None
    Unsubscribe.objects.create(address=CANARY_NORMALISED, how=Unsubscribe.How.PAGE)
    return firings


def mentions(text: str) -> list[str]:
    lowered = text.lower()
    return [needle for needle in (CANARY_NORMALISED, *(n.lower() for n in NAMES)) if needle in lowered]


def test_before_erasure_firings_and_messages_name_them(fired):
    """The checks below can fail: the canary is in the recipient, the explanation and the rendered mail."""
    welcome = Dispatch.objects.get(source_id=fired["welcome:ws_canary"].pk)
    assert fired["welcome:ws_canary"].recipient == f"email:{CANARY_NORMALISED}"
    assert welcome.recipient == CANARY_NORMALISED and mentions(welcome.subject + welcome.html) == ["cassandra"]
    assert fired["export_seen:ws_canary"].explanation["values"]["user_email"] == CANARY_NORMALISED
    assert fired["paid_thanks:ws_canary"].status == "deferred"


def test_the_export_lists_every_firing_and_message_that_names_them(fired):
    document = person_export(email=CANARY_NORMALISED)

    exported = {(row["model"], row["pk"]) for name in ("firings", "dispatches") for row in document[name]}
    naming = {
        (row["model"], row["pk"])
        for model in (Firing, Dispatch)
        for row in serializers.serialize("python", model.objects.all())
        if mentions(str(row["fields"]))
    }
    assert naming and naming <= exported
    assert {row["fields"]["workspace_key"] for row in document["firings"]} == {"ws_canary"}  # not the bystander's
    assert [row["fields"]["address"] for row in document["unsubscribes"]] == [CANARY_NORMALISED]


def test_erasure_scrubs_firings_and_messages_and_stops_what_was_not_sent(fired):
    person_erase(email=CANARY_NORMALISED)

    # nothing in the trigger engine's or messaging's rows names them any more
    dump = "\n".join(line for line in database_dump().splitlines() if "firing" in line or "dispatch" in line)
    assert mentions(dump) == []
    welcome = Firing.objects.get(pk=fired["welcome:ws_canary"].pk)
    assert is_placeholder(welcome.recipient.removeprefix("email:"))
    seen = Firing.objects.get(pk=fired["export_seen:ws_canary"].pk)
    assert is_placeholder(seen.explanation["values"]["user_email"])
    mail = Dispatch.objects.get(source_id=welcome.pk)
    assert (mail.status, mail.last_error, mail.next_attempt_at) == ("skipped", NOT_SENT, None)
    assert is_placeholder(mail.recipient) and "[erased]" in mail.subject
    note = Dispatch.objects.get(source_id=fired["team_note:ws_canary"].pk)
    assert note.status == "pending" and mentions(note.text) == []  # to the team: still sent, without them
    assert is_placeholder(Unsubscribe.objects.get().address)


def test_a_firing_deferred_for_them_is_suppressed_and_its_release_sends_nothing(fired):
    person_erase(email=CANARY_NORMALISED)

    deferred = Firing.objects.get(pk=fired["paid_thanks:ws_canary"].pk)
    assert (deferred.status, deferred.reason, deferred.explanation["why_not"]) == (
        "suppressed",
        "no_recipient",
        NOT_SENT,
    )
    assert timers_fire_due(now=NIGHT + timedelta(days=1)) == []
    assert not Dispatch.objects.filter(source_id=deferred.pk).exists()


def test_a_new_firing_after_erasure_finds_nobody_to_send_to(fired):
    person_erase(email=CANARY_NORMALISED)
    Firing.objects.filter(trigger__key="paid_thanks").delete()  # decide the conversion again, as new

    [again] = decide("ws_canary", ("subscription.converted",), ("paid_thanks",), NIGHT + timedelta(days=1))

    assert (again.status, again.reason, again.recipient) == ("suppressed", "no_recipient", "")
    assert not Dispatch.objects.filter(source_id=again.pk).exists()


def test_the_bystanders_firings_and_messages_are_untouched(fired):
    before = list(Dispatch.objects.filter(source_id=fired["welcome:ws_other"].pk).values())

    person_erase(email=CANARY_NORMALISED)

    assert Firing.objects.get(pk=fired["welcome:ws_other"].pk).recipient == f"email:{OTHER}"
    assert list(Dispatch.objects.filter(source_id=fired["welcome:ws_other"].pk).values()) == before
