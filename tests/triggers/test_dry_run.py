"""The dry run: a trigger (saved, or edited and unsaved) evaluated against current data by the real engine,
per kind, with caps, quiet hours and the holdout shown, and nothing written; and its admin page."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from messaging.models import Dispatch
from tests.factories import WorkspaceFactory
from tests.triggers.conftest import T0, event, make_trigger, minutes, usage
from triggers.experiments import RUNNING_CACHE_KEY, arm_for, experiment_save, experiment_start
from triggers.models import CapLock, Experiment, Firing, Timer, Trigger
from triggers.preview import READERS, Preview, trigger_preview
from triggers.services import triggers_evaluate
from usage.models import Cohort, CohortMembership, Stage, StagePeriod
from workspaces.models import Workspace

pytestmark = pytest.mark.django_db

HOUR = timedelta(hours=1)
STARTED = {"kind": "event", "event": {"type": "trial.started"}}
EMAIL = {"channel": "email", "template": "welcome"}
FAILED_EXPORT = {"type": "usage.recorded", "where": [{"path": "feature", "op": "==", "value": "export.failed"}]}


@pytest.fixture(autouse=True)
def running_experiments_not_cached() -> Iterator[None]:
    cache.delete(RUNNING_CACHE_KEY)
    yield
    cache.delete(RUNNING_CACHE_KEY)


def written() -> tuple[int, ...]:
    """Everything a decision could write: none of it may change in a dry run."""
    return tuple(model.objects.count() for model in (Trigger, Firing, Timer, Dispatch, CapLock))


def verdicts(preview: Preview) -> dict[str, str]:
    return {outcome.workspace_key: outcome.verdict for outcome in preview.outcomes}


def workspace(key: str, **fields) -> Workspace:
    return WorkspaceFactory(workspace_id=key, email=f"owner@{key}.example", **fields)


def test_an_unsaved_event_trigger_fires_for_recent_matches_with_its_why_and_writes_nothing():
    # given: two trials started within the look-back, one a day before it
    for key in ("ws_a", "ws_b", "ws_old"):
        workspace(key)
    first, _ = event("ws_a", "trial.started", T0 - HOUR), event("ws_b", "trial.started", T0 - 2 * HOUR)
    event("ws_old", "trial.started", T0 - timedelta(hours=30))
    draft = Trigger(key="welcome", name="Welcome", when=STARTED, actions=[{"channel": "email", "template": "welcome"}])
    before = written()
    # when
    preview = trigger_preview(trigger=draft, now=T0)
    # then
    assert verdicts(preview) == {"ws_a": "fire", "ws_b": "fire"}
    outcome = next(o for o in preview.outcomes if o.workspace_key == "ws_a")
    assert (outcome.occurrence, outcome.recipient) == (f"event:{first.pk}", "email:owner@ws_a.example")
    assert outcome.explanation["event_ids"] == [first.pk]
    [message] = outcome.messages
    assert (message["channel"], message["recipient"], message["status"]) == ("email", "owner@ws_a.example", "pending")
    assert message["subject"]  # rendered from templates/triggers/welcome.subject.txt
    assert written() == before
    assert draft.pk is None


def test_an_occurrence_already_decided_is_not_decided_again():
    workspace("ws_a")
    trigger = make_trigger("welcome", STARTED)
    started = event("ws_a", "trial.started", T0 - HOUR)
    triggers_evaluate(workspace_key="ws_a", new_events=[started], now=T0 - HOUR)

    [outcome] = trigger_preview(trigger=trigger, now=T0).outcomes

    assert outcome.verdict == "already_decided"
    assert "Already decided on" in outcome.words


def test_an_edit_of_a_saved_trigger_is_evaluated_not_the_stored_one():
    workspace("ws_a")
    trigger = make_trigger("welcome", STARTED)
    usage("ws_a", T0 - HOUR, "export.failed")
    trigger.when = {"kind": "event", "event": FAILED_EXPORT}

    [outcome] = trigger_preview(trigger=trigger, now=T0).outcomes

    assert outcome.explanation["event_type"] == "usage.recorded"
    assert Trigger.objects.get(pk=trigger.pk).when == STARTED


def test_caps_quiet_hours_and_the_holdout_are_shown_as_they_would_apply(settings):
    # given: ws_capped used its workspace slot today, ws_night is in quiet hours, ws_held in the holdout
    settings.TRIGGERS_WORKSPACE_CAP = (1, 86400)
    settings.TRIGGERS_QUIET_HOURS = ("21:00", "08:00")
    trigger = make_trigger("nudge", STARTED, follow_up={"goal": {"event": {"type": "usage.recorded"}},
                                                        "within_seconds": 86400})  # fmt: skip
    arms = [{"key": "holdout", "weight": 50}, {"key": "control", "weight": 50}]
    experiment = experiment_save(experiment=Experiment(trigger=trigger, key="nudge-holdout", name="h", arms=arms))
    experiment_start(experiment=experiment, now=T0 - timedelta(days=1))
    held = next(f"ws_h{i}" for i in range(100) if arm_for(experiment, f"ws_h{i}")[0].key == "holdout")
    treated = [f"ws_t{i}" for i in range(100) if arm_for(experiment, f"ws_t{i}")[0].key == "control"][:2]
    capped, night = treated
    workspace(held), workspace(capped), workspace(night, timezone="Pacific/Auckland")  # 01:00 there at T0
    make_trigger("earlier", STARTED, priority=9)
    triggers_evaluate(workspace_key=capped, new_events=[event(capped, "trial.started", T0 - 2 * HOUR)],
                      now=T0 - 2 * HOUR, triggers=[Trigger.objects.get(key="earlier")])  # fmt: skip
    for key in (held, capped, night):
        event(key, "trial.started", T0 - HOUR)
    before = written()

    preview = trigger_preview(trigger=trigger, now=T0)

    by_key = {o.workspace_key: o for o in preview.outcomes if o.verdict != "already_decided"}
    assert (by_key[held].verdict, by_key[held].arm) == ("hold_out", "holdout")
    assert "holdout" in by_key[held].words and by_key[held].messages == []
    assert by_key[capped].verdict == "suppress"
    assert by_key[capped].words == "Suppressed: the workspace cap across triggers."
    assert by_key[night].verdict == "defer"
    assert "Pacific/Auckland until" in by_key[night].words
    assert written() == before


def test_a_count_trigger_counts_the_recent_events():
    workspace("ws_a"), workspace("ws_b")
    for i in range(3):
        usage("ws_a", T0 - HOUR + minutes(10 * i), "export.failed")
    usage("ws_b", T0 - HOUR, "export.failed")
    draft = Trigger(key="triage", name="Triage", when={"kind": "count", "event": FAILED_EXPORT, "count": 3,
                    "within_seconds": 3600}, actions=[{"channel": "email", "template": "welcome"}])  # fmt: skip

    [outcome] = trigger_preview(trigger=draft, now=T0).outcomes

    assert (outcome.workspace_key, outcome.verdict, outcome.explanation["count"]) == ("ws_a", "fire", 3)


def test_a_cohort_entry_fires_for_the_current_members():
    cohort = Cohort.objects.create(key="power_t", name="Power", condition={"all": []})
    for key, exited in (("ws_in", None), ("ws_out", T0 - HOUR)):
        workspace(key)
        CohortMembership.objects.create(workspace_key=key, cohort=cohort, entered_at=T0 - timedelta(days=3),
                                        exited_at=exited, entered_version=1, entered_why={"result": True})  # fmt: skip
    draft = Trigger(key="power", name="Power", when={"kind": "cohort", "cohort": "power_t", "change": "entered"},
                    actions=[{"channel": "email", "template": "welcome"}])  # fmt: skip

    entered = trigger_preview(trigger=draft, now=T0)
    draft.when = {"kind": "cohort", "cohort": "power_t", "change": "exited"}
    exited = trigger_preview(trigger=draft, now=T0)

    assert verdicts(entered) == {"ws_in": "fire"}
    assert entered.outcomes[0].explanation["why"] == {"result": True}
    assert verdicts(exited) == {"ws_out": "fire"}


def test_a_stage_change_fires_for_the_current_members_that_came_from_the_named_stage():
    onboarding = Stage.objects.create(key="onboarding_t", name="Onboarding", order=90, condition={"all": []})
    active = Stage.objects.create(key="active_t", name="Active", order=91, condition={"all": []})
    for key, previous in (("ws_from", onboarding), ("ws_new", None)):
        workspace(key)
        StagePeriod.objects.create(workspace_key=key, stage=active, previous=previous, entered_at=T0 - HOUR,
                                   entered_version=1)  # fmt: skip
    draft = Trigger(key="activated", name="Activated", when={"kind": "stage", "from": "onboarding_t", "to": "active_t"},
                    actions=[{"channel": "email", "template": "welcome"}])  # fmt: skip

    preview = trigger_preview(trigger=draft, now=T0)

    assert verdicts(preview) == {"ws_from": "fire"}
    explanation = preview.outcomes[0].explanation
    assert (explanation["from"], explanation["to"]) == ("onboarding_t", "active_t")


def test_a_stall_fires_for_starts_past_their_deadline_without_a_finish_and_lists_the_running_ones():
    when = {"kind": "stall", "start": {"type": "usage.recorded", "where": [{"path": "feature", "op": "==",
            "value": "integration.started"}]}, "finish": {"type": "usage.recorded", "where": [{"path": "feature",
            "op": "==", "value": "integration.finished"}]}, "within_seconds": 48 * 3600}  # fmt: skip
    for key in ("ws_stalled", "ws_finished", "ws_running"):
        workspace(key)
    stalled = usage("ws_stalled", T0 - timedelta(hours=50), "integration.started")
    usage("ws_finished", T0 - timedelta(hours=50), "integration.started")
    usage("ws_finished", T0 - timedelta(hours=49), "integration.finished")
    usage("ws_running", T0 - HOUR, "integration.started")
    draft = Trigger(key="stalled", name="Stalled", when=when, actions=[{"channel": "email", "template": "welcome"}])
    before = written()

    preview = trigger_preview(trigger=draft, now=T0)

    assert verdicts(preview) == {"ws_stalled": "fire"}
    assert preview.outcomes[0].explanation["event_ids"] == [stalled.pk]
    assert [(later.workspace_key, later.due_at) for later in preview.later] == [("ws_running", T0 + 47 * HOUR)]
    assert written() == before


def test_a_silence_fires_for_workspaces_that_went_quiet_within_the_look_back():
    for key in ("ws_quiet", "ws_busy", "ws_long_gone"):
        workspace(key)
    last = usage("ws_quiet", T0 - timedelta(days=3, hours=2))
    usage("ws_busy", T0 - timedelta(days=3, hours=2)), usage("ws_busy", T0 - HOUR)
    usage("ws_long_gone", T0 - timedelta(days=9))
    draft = Trigger(key="quiet", name="Quiet", when={"kind": "silence", "for_seconds": 3 * 86400},
                    actions=[{"channel": "email", "template": "welcome"}])  # fmt: skip

    [outcome] = trigger_preview(trigger=draft, now=T0).outcomes

    assert (outcome.workspace_key, outcome.occurrence) == ("ws_quiet", f"silence:{last.pk}")


def test_a_date_trigger_fires_for_dates_within_its_days_now():
    workspace("ws_soon", status=Workspace.Status.TRIAL, trial_expires_at=T0 + timedelta(days=2))
    workspace("ws_later", status=Workspace.Status.TRIAL, trial_expires_at=T0 + timedelta(days=3, hours=5))
    workspace("ws_paid", status=Workspace.Status.PAID, trial_expires_at=T0 + timedelta(days=1))
    draft = Trigger(key="ending", name="Ending", when={"kind": "date", "field": "trial_expires_at", "days_before": 3},
                    actions=[{"channel": "email", "template": "welcome"}])  # fmt: skip

    preview = trigger_preview(trigger=draft, now=T0)

    assert verdicts(preview) == {"ws_soon": "fire"}
    assert preview.outcomes[0].explanation["days_left"] == 2.0
    assert [later.workspace_key for later in preview.later] == ["ws_later"]


def test_an_invalid_or_duplicate_trigger_is_refused_by_field():
    make_trigger("welcome", STARTED)

    with pytest.raises(ValidationError) as invalid:
        trigger_preview(trigger=Trigger(key="x", name="x", when={"kind": "event", "event": {"type": 7}}, actions=[]))
    with pytest.raises(ValidationError) as duplicate:
        trigger_preview(trigger=Trigger(key="welcome", name="w", when=STARTED, actions=[EMAIL]))

    assert "when" in invalid.value.message_dict
    assert "key" in duplicate.value.message_dict


def test_a_kind_with_no_dry_run_reader_is_refused_saying_which_kinds_are_covered(monkeypatch):
    # given: a kind the dry run cannot read (as a higher app's kind before it registers a reader)
    monkeypatch.delitem(READERS, "event")

    with pytest.raises(ValidationError) as refused:
        trigger_preview(trigger=Trigger(key="x", name="x", when=STARTED, actions=[EMAIL]))

    assert "The dry run covers the kinds count, cohort" in refused.value.message_dict["when"][0]
    assert "not 'event'" in refused.value.message_dict["when"][0]


# --- the admin page --------------------------------------------------------------------------------------------


def admin_form(**changes: str) -> dict[str, str]:
    data = {
        "key": "welcome", "name": "Welcome", "description": "", "enabled": "on", "priority": "0",
        "when": json.dumps(STARTED), "audience": "user", "team": "",
        "actions": json.dumps([{"channel": "email", "template": "welcome"}]), "follow_up": "null",
        "cap_seconds": "", "reentry": "every_time", "_dry_run": "Dry run",
    }  # fmt: skip
    return data | changes


def test_the_change_page_offers_the_dry_run_and_it_shows_the_saved_trigger(admin_client):
    now = timezone.now()
    workspace("ws_a")
    event("ws_a", "trial.started", now - HOUR)
    trigger = make_trigger("welcome", STARTED, enabled=False)

    page = admin_client.get(reverse("admin:triggers_trigger_change", args=[trigger.pk])).content.decode()
    response = admin_client.get(reverse("admin:triggers_trigger_dry_run", args=[trigger.pk]))

    assert reverse("admin:triggers_trigger_dry_run", args=[trigger.pk]) in page and 'name="_dry_run"' in page
    assert response.status_code == 200
    body = response.content.decode()
    assert "ws_a" in body and "Fires now." in body and "would fire: <strong>1</strong>" in body


def test_the_change_forms_unsaved_edits_are_dry_run_and_not_saved(admin_client):
    now = timezone.now()
    workspace("ws_a")
    usage("ws_a", now - HOUR, "export.failed")
    trigger = make_trigger("welcome", STARTED)
    edited = admin_form(when=json.dumps({"kind": "event", "event": FAILED_EXPORT}))

    response = admin_client.post(reverse("admin:triggers_trigger_dry_run", args=[trigger.pk]), edited)

    assert response.status_code == 200
    assert [o.workspace_key for o in response.context["preview"].outcomes] == ["ws_a"]
    assert json.loads(response.context["document_text"])["when"]["event"] == FAILED_EXPORT
    assert Trigger.objects.get(pk=trigger.pk).when == STARTED
    assert not Firing.objects.exists()


def test_a_new_trigger_can_be_dry_run_from_the_add_page(admin_client):
    workspace("ws_a")
    event("ws_a", "trial.started", timezone.now() - HOUR)

    response = admin_client.post(reverse("admin:triggers_trigger_dry_run_new"), admin_form(key="brand_new"))

    assert [o.verdict for o in response.context["preview"].outcomes] == ["fire"]
    assert not Trigger.objects.exists()


def test_an_edited_document_with_errors_names_the_path(admin_client):
    trigger = make_trigger("welcome", STARTED)
    document = json.dumps({"key": "welcome", "name": "W", "when": {"kind": "event", "event": {"type": 7}}})

    response = admin_client.post(reverse("admin:triggers_trigger_dry_run", args=[trigger.pk]),
                                 {"document": document, "hours": "48"})  # fmt: skip
    bad_json = admin_client.post(reverse("admin:triggers_trigger_dry_run", args=[trigger.pk]), {"document": "{"})

    assert response.status_code == 200 and response.context["preview"] is None
    assert any("when.event.type" in message for message in response.context["errors"]["when"])
    assert response.context["hours"] == 48
    assert "Not valid JSON" in bad_json.context["errors"]["document"][0]


def test_someone_without_the_admin_cannot_dry_run(client):
    trigger = make_trigger("welcome", STARTED)
    client.force_login(User.objects.create(username="rep_only"))

    response = client.get(reverse("admin:triggers_trigger_dry_run", args=[trigger.pk]))

    assert response.status_code == 302  # to the admin login
