"""The admin: a trigger is edited as data (errors from triggers/spec.py on their fields, the version raised
when what it does changed); firings and timers are read-only, a firing shows its explanation."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse
from django.utils import timezone

from messaging.models import Dispatch
from tests.factories import WorkspaceFactory
from tests.triggers.conftest import T0, event, make_trigger
from triggers.models import Timer, Trigger
from triggers.services import triggers_evaluate

pytestmark = pytest.mark.django_db


def form(**changes) -> dict[str, str]:
    data = {
        "key": "welcome", "name": "Welcome", "description": "", "enabled": "on", "priority": "0",
        "when": json.dumps({"kind": "event", "event": {"type": "trial.started"}}), "audience": "user", "team": "",
        "actions": json.dumps([{"channel": "email", "template": "welcome"}]), "follow_up": "null",
        "cap_seconds": "", "reentry": "every_time",
    }  # fmt: skip
    return data | changes


def test_an_invalid_trigger_is_refused_with_the_spec_error_on_its_field(admin_client):
    response = admin_client.post(
        reverse("admin:triggers_trigger_add"), form(when=json.dumps({"kind": "event", "event": {"type": 7}}))
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "when" in errors and "when.event.type" in " ".join(errors["when"])
    assert not Trigger.objects.exists()


def test_saving_in_the_admin_validates_and_versions(admin_client):
    assert admin_client.post(reverse("admin:triggers_trigger_add"), form()).status_code == 302
    trigger = Trigger.objects.get(key="welcome")
    assert trigger.version == 1

    change = reverse("admin:triggers_trigger_change", args=[trigger.pk])
    assert admin_client.post(change, form(description="Text alone")).status_code == 302
    assert Trigger.objects.get(pk=trigger.pk).version == 1
    assert admin_client.post(change, form(priority="5")).status_code == 302
    assert Trigger.objects.get(pk=trigger.pk).version == 2


def test_a_firing_shows_its_explanation_and_nothing_is_editable(admin_client):
    WorkspaceFactory(workspace_id="ws_a", email="o@acme.io")
    make_trigger("welcome", {"kind": "event", "event": {"type": "trial.started"}})
    make_trigger("quiet", {"kind": "silence", "for_seconds": 3600})
    started, used = event("ws_a", "trial.started", T0), event("ws_a", "usage.recorded", T0, feature="x")
    [firing] = triggers_evaluate(workspace_key="ws_a", new_events=[started, used], now=T0)  # and a silence timer

    page = admin_client.get(reverse("admin:triggers_firing_change", args=[firing.pk]))
    assert page.status_code == 200
    assert f"&quot;event_ids&quot;: [\n    {started.pk}\n  ]" in page.content.decode()
    assert admin_client.get(reverse("admin:triggers_firing_changelist")).status_code == 200
    assert admin_client.get(reverse("admin:triggers_firing_add")).status_code == 403
    timer = Timer.objects.get()
    assert admin_client.get(reverse("admin:triggers_timer_change", args=[timer.pk])).status_code == 200
    assert admin_client.get(reverse("admin:triggers_timer_changelist")).status_code == 200
    assert admin_client.get(reverse("admin:messaging_dispatch_changelist")).status_code == 200


def test_a_dead_dispatch_is_retried_from_the_admin(admin_client):
    row = Dispatch.objects.create(key="firing-1-email-0", source="firing", source_id=1, channel="email",
                                  status="dead", attempts=6, last_error="SMTP 550")  # fmt: skip
    response = admin_client.post(
        reverse("admin:messaging_dispatch_changelist"), {"action": "retry", "_selected_action": [row.pk]}
    )

    assert response.status_code == 302
    row.refresh_from_db()
    assert (row.status, row.attempts) == ("pending", 6) and row.next_attempt_at <= timezone.now()
