"""Experiments: a stable arm per workspace, the holdout recorded but never sent and its goal still measured,
an arm's own actions, the arm in the firing and the API, validation by path, versions, start and stop."""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from messaging.models import Dispatch
from privacy.roles import ADMINS, AUDITORS
from tests.conftest import api_service_user
from tests.factories import WorkspaceFactory
from tests.triggers.conftest import T0, event, make_trigger, usage
from triggers.experiments import (
    RUNNING_CACHE_KEY,
    arm_for,
    experiment_save,
    experiment_start,
    experiment_stop,
    workspace_bucket,
)
from triggers.models import Experiment, Firing, Trigger
from triggers.selectors import experiment_arm_counts, firing_document
from triggers.services import triggers_evaluate
from triggers.timers import timers_fire_due

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)
STARTED = {"kind": "event", "event": {"type": "trial.started"}}
SEND = {"type": "usage.recorded", "where": [{"path": "feature", "op": "==", "value": "envelope.send"}]}
FOLLOW_UP = {
    "goal": {"event": SEND},
    "within_seconds": 3 * 86400,
    "escalate": [{"channel": "slack", "template": "escalation"}],
}
ARMS = [
    {"key": "holdout", "weight": 20},
    {"key": "control", "weight": 40},
    {"key": "short", "weight": 40, "actions": [{"channel": "email", "template": "escalation"}]},
]


@pytest.fixture(autouse=True)
def running_experiments_not_cached() -> Iterator[None]:
    cache.delete(RUNNING_CACHE_KEY)
    yield
    cache.delete(RUNNING_CACHE_KEY)


def running(trigger: Trigger, arms: list | None = None, **fields) -> Experiment:
    experiment = experiment_save(
        experiment=Experiment(trigger=trigger, key=f"{trigger.key}-test", name="test", arms=arms or ARMS, **fields)
    )
    return experiment_start(experiment=experiment, now=T0 - DAY)


def workspace_in(experiment: Experiment, arm: str, prefix: str = "ws") -> str:
    """A workspace id (made as a workspace) that hashes into this arm."""
    key = next(f"{prefix}_{i}" for i in range(1000) if arm_for(experiment, f"{prefix}_{i}")[0].key == arm)
    WorkspaceFactory(workspace_id=key, email=f"owner@{key}.example")
    return key


def started(workspace: str, at=T0) -> list[Firing]:
    return triggers_evaluate(workspace_key=workspace, new_events=[event(workspace, "trial.started", at)], now=at)


@pytest.fixture
def welcome() -> Trigger:
    return make_trigger("welcome", STARTED, follow_up=FOLLOW_UP)


def test_assignment_is_a_pure_function_of_salt_and_workspace_in_the_weights_shares(welcome):
    # given
    experiment = running(welcome)
    # when
    arms = Counter(arm_for(experiment, f"ws_{i}")[0].key for i in range(10_000))
    again = [arm_for(Experiment(arms=ARMS, salt=experiment.salt), f"ws_{i}")[0].key for i in range(50)]
    # then: the same arm for a fresh copy (another worker, a replay), in about the weights' shares
    assert again == [arm_for(experiment, f"ws_{i}")[0].key for i in range(50)]
    assert abs(arms["holdout"] / 10_000 - 0.2) < 0.02
    assert abs(arms["short"] / 10_000 - 0.4) < 0.02
    assert len({workspace_bucket(f"salt-{i}", "ws_1") for i in range(20)}) > 10  # the salt reshuffles


def test_a_held_out_firing_is_recorded_sends_nothing_and_says_why(welcome):
    experiment = running(welcome)
    workspace = workspace_in(experiment, "holdout")

    [firing] = started(workspace)

    assert (firing.status, firing.reason, firing.arm, firing.experiment) == (
        "suppressed", "holdout", "holdout", experiment,
    )  # fmt: skip
    assert firing.fired_at is None
    assert firing.explanation["why_not"] == "Experiment holdout"
    assert firing.explanation["experiment"]["key"] == experiment.key
    assert firing.explanation["experiment"]["arm"] == "holdout"
    assert firing.explanation["experiment"]["shares"] == {"holdout": 0.2, "control": 0.4, "short": 0.4}
    assert Dispatch.objects.count() == 0
    assert [a["status"] for a in firing.actions] == ["suppressed"]
    document = firing_document(firing)
    assert (document["arm"], document["fired_at"], document["reason"]) == ("holdout", None, "holdout")


def test_the_holdouts_goal_is_tracked_and_reached_like_a_treated_one(welcome):
    experiment = running(welcome)
    workspace = workspace_in(experiment, "holdout")
    [firing] = started(workspace)
    assert (firing.goal, firing.goal_due_at) == ("pending", T0 + 3 * DAY)

    triggers_evaluate(workspace_key=workspace, new_events=[usage(workspace, T0 + DAY)], now=T0 + DAY)

    firing.refresh_from_db()
    assert firing.goal == "reached"


def test_a_held_out_firing_that_misses_its_goal_never_escalates(welcome):
    experiment = running(welcome)
    workspace = workspace_in(experiment, "holdout")
    [firing] = started(workspace)

    assert timers_fire_due(now=T0 + 3 * DAY) == []  # no activity at all: a treated one would escalate

    firing.refresh_from_db()
    assert firing.goal == "missed"
    assert Dispatch.objects.count() == 0


def test_a_treated_firing_records_its_arm_and_an_arm_replaces_the_actions(welcome):
    experiment = running(welcome)
    control, short = workspace_in(experiment, "control"), workspace_in(experiment, "short", prefix="other")

    [plain] = started(control)
    [varied] = started(short)

    assert (plain.status, plain.arm, plain.explanation["experiment"]["actions_replaced"]) == ("fired", "control", False)
    assert (varied.status, varied.arm, varied.explanation["experiment"]["actions_replaced"]) == ("fired", "short", True)
    assert Dispatch.objects.get(source_id=plain.pk).template == "welcome"
    assert Dispatch.objects.get(source_id=varied.pk).template == "escalation"


def test_a_treated_firing_that_misses_its_goal_with_no_activity_escalates(welcome):
    experiment = running(welcome)
    [firing] = started(workspace_in(experiment, "control"))

    [escalation] = timers_fire_due(now=T0 + 3 * DAY)

    assert (escalation.escalation_of, escalation.arm) == (firing, None)  # an escalation is not assigned again


def test_a_replay_names_the_same_occurrence_and_adds_nothing(welcome):
    experiment = running(welcome)
    workspace = workspace_in(experiment, "holdout")
    trial = event(workspace, "trial.started", T0)
    triggers_evaluate(workspace_key=workspace, new_events=[trial], now=T0)
    cache.delete(RUNNING_CACHE_KEY)  # another process: its own cache

    assert triggers_evaluate(workspace_key=workspace, new_events=[trial], now=T0 + DAY) == []
    assert Firing.objects.get().arm == "holdout"


def test_a_holdout_counts_for_the_triggers_own_reentry_as_if_it_had_fired():
    once = make_trigger("welcome_once", STARTED, follow_up=FOLLOW_UP, reentry="once")
    experiment = running(once)
    workspace = workspace_in(experiment, "holdout")

    first, second = started(workspace)[0], started(workspace, T0 + DAY)[0]

    assert (first.reason, second.reason, second.arm) == ("holdout", "reentry", "holdout")


def test_a_capped_firing_keeps_its_cap_reason_and_its_arm(settings, welcome):
    settings.TRIGGERS_WORKSPACE_CAP = (1, 86400)
    make_trigger("urgent", STARTED, priority=9)
    experiment = running(welcome)
    workspace = workspace_in(experiment, "holdout")

    by_key = {f.trigger.key: f for f in started(workspace)}

    assert (by_key["welcome"].reason, by_key["welcome"].arm) == ("cap_workspace", "holdout")
    assert by_key["welcome"].goal == ""  # never exposed: not measured


def test_an_experiment_goal_of_its_own_is_measured_with_its_window():
    plain = make_trigger("plain", STARTED)  # no follow-up of its own
    experiment = running(plain, goal={"event": SEND}, goal_within_seconds=86400)
    workspace = workspace_in(experiment, "control")

    [firing] = started(workspace)

    assert (firing.goal, firing.goal_due_at) == ("pending", T0 + DAY)
    assert firing.explanation["experiment"]["goal"] == {"event": SEND}
    usage(workspace, T0 + timedelta(hours=2))
    assert timers_fire_due(now=T0 + DAY) == []  # the late check at the window's end finds it
    firing.refresh_from_db()
    assert firing.goal == "reached"


def test_a_stopped_or_draft_experiment_assigns_nothing(welcome):
    draft = experiment_save(experiment=Experiment(trigger=welcome, key="draft", name="d", arms=ARMS))
    [before] = started(workspace_in(draft, "holdout"))
    experiment_start(experiment=draft, now=T0 - DAY)
    experiment_stop(experiment=draft, now=T0 - DAY / 2)

    [after] = started(workspace_in(draft, "holdout", prefix="late"))

    assert (before.arm, before.status, after.arm, after.status) == (None, "fired", None, "fired")


def test_counts_per_arm(welcome):
    experiment = running(welcome)
    for arm in ("holdout", "control"):
        started(workspace_in(experiment, arm, prefix=arm))

    rows = {row["arm"]: row for row in experiment_arm_counts(experiment=experiment)}

    assert (rows["holdout"]["held_back"], rows["holdout"]["fired"], rows["holdout"]["pending"]) == (1, 0, 1)
    assert (rows["control"]["held_back"], rows["control"]["fired"], rows["control"]["pending"]) == (0, 1, 1)


@pytest.mark.parametrize(
    ("arms", "path", "words"),
    [
        ([], "arms", "Expected a list of arms"),
        ([{"key": "holdout", "weight": 10}], "arms", "besides the holdout"),
        ([{"key": "a", "weight": 1}, {"key": "a", "weight": 1}], "arms[1].key", "listed twice"),
        ([{"key": "a", "weight": -1}], "arms[0].weight", "whole number"),
        ([{"key": "a", "weight": True}], "arms[0].weight", "whole number"),
        ([{"key": "x" * 33, "weight": 1}], "arms[0].key", "at most 32"),
        ([{"key": "a", "weight": 0}], "arms", "sum above zero"),
        ([{"key": "holdout", "weight": 1, "actions": []}, {"key": "a", "weight": 1}], "arms[0].actions", "nothing"),
        (
            [{"key": "a", "weight": 1, "actions": [{"channel": "pigeon", "template": "t"}]}],
            "arms[0].actions[0]",
            "channel",
        ),
        ([{"key": "a", "weight": 1, "colour": "red"}], "arms[0]", "Unexpected key(s): colour"),
    ],
)
def test_bad_arms_are_refused_naming_the_path(welcome, arms, path, words):
    with pytest.raises(ValidationError) as refused:
        experiment_save(experiment=Experiment(trigger=welcome, key="bad", name="bad", arms=arms))

    assert any(message.startswith(path) and words in message for message in refused.value.messages), refused.value


def test_a_trigger_with_no_goal_to_measure_or_a_receipt_is_refused():
    plain = make_trigger("plain", STARTED)
    receipt = make_trigger("receipt", STARTED, transactional=True, follow_up=FOLLOW_UP)

    with pytest.raises(ValidationError) as no_goal:
        experiment_save(experiment=Experiment(trigger=plain, key="e1", name="e", arms=ARMS))
    with pytest.raises(ValidationError) as transactional:
        experiment_save(experiment=Experiment(trigger=receipt, key="e2", name="e", arms=ARMS))
    with pytest.raises(ValidationError) as bad_goal:
        experiment_save(experiment=Experiment(trigger=plain, key="e3", name="e", arms=ARMS, goal={"event": {}}))

    assert "goal" in no_goal.value.message_dict
    assert "trigger" in transactional.value.message_dict
    assert any(m.startswith("goal.event.type") for m in bad_goal.value.message_dict["goal"])
    assert any(m.startswith("goal_within_seconds") for m in bad_goal.value.message_dict["goal_within_seconds"])


def test_one_open_experiment_per_trigger(welcome):
    running(welcome)

    with pytest.raises(ValidationError) as refused:
        experiment_save(experiment=Experiment(trigger=welcome, key="second", name="s", arms=ARMS))

    assert "stop it first" in " ".join(refused.value.messages)


def test_the_version_goes_up_when_the_split_changes_not_the_words(welcome):
    experiment = running(welcome)

    experiment.name = "renamed"
    assert experiment_save(experiment=experiment).version == 1
    experiment.arms = [{"key": "holdout", "weight": 50}, {"key": "control", "weight": 50}]
    assert experiment_save(experiment=experiment).version == 2
    [firing] = started(workspace_in(experiment, "control"))
    assert firing.explanation["experiment"]["version"] == 2


def test_start_and_stop_are_refused_out_of_turn(welcome):
    experiment = running(welcome)

    with pytest.raises(ValidationError):
        experiment_start(experiment=experiment)
    experiment_stop(experiment=experiment)
    with pytest.raises(ValidationError):
        experiment_stop(experiment=experiment)


# --- the read API and the admin -----------------------------------------------------------------------------


def test_the_api_says_holdout_for_a_held_back_firing_and_the_arm_for_a_treated_one(welcome):
    experiment = running(welcome)
    started(workspace_in(experiment, "holdout")), started(workspace_in(experiment, "short", prefix="t"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=api_service_user()).key}")

    rows = client.get("/api/firings/", {"trigger": "welcome"}).json()["results"]

    arms = sorted((row["arm"], row["fired_at"] is None, row["explanation"]["experiment"]["arm"]) for row in rows)
    assert arms == [("holdout", True, "holdout"), ("short", False, "short")]


@pytest.fixture
def staff(django_user_model):
    """A logged-in client per staff role, with the groups exactly as migrate sets them."""
    call_command("privacy", "groups", stdout=io.StringIO())
    clients = {}
    for name, group in (("admin", ADMINS), ("auditor", AUDITORS)):
        user = django_user_model.objects.create(username=name, is_staff=True)
        user.groups.add(Group.objects.get(name=group))
        clients[name] = Client()
        clients[name].force_login(user)
    return clients


def experiment_form(trigger: Trigger, **changes) -> dict[str, str]:
    arms = [{"key": "holdout", "weight": 10}, {"key": "control", "weight": 90}]
    data = {"key": "welcome-holdout", "name": "Welcome holdout", "hypothesis": "", "trigger": str(trigger.pk),
            "arms": json.dumps(arms), "goal": "null", "goal_within_seconds": ""}  # fmt: skip
    return data | changes


def test_a_lifecycle_admin_adds_starts_and_stops_an_experiment_in_the_admin(staff, welcome):
    client = staff["admin"]
    assert client.post(reverse("admin:triggers_experiment_add"), experiment_form(welcome)).status_code == 302
    experiment = Experiment.objects.get()
    changelist = reverse("admin:triggers_experiment_changelist")

    client.post(changelist, {"action": "start", "_selected_action": [experiment.pk]})
    experiment.refresh_from_db()
    assert experiment.started_at is not None and experiment.stopped_at is None
    client.post(changelist, {"action": "stop", "_selected_action": [experiment.pk]})
    experiment.refresh_from_db()
    assert experiment.stopped_at is not None
    page = client.get(reverse("admin:triggers_experiment_change", args=[experiment.pk])).content.decode()
    assert "stopped" in page and "None yet." in page
    assert "holdout 10%, control 90%" in client.get(changelist).content.decode()


def test_the_admin_form_names_a_bad_arm_by_its_path(staff, welcome):
    bad = experiment_form(welcome, arms='[{"key": "control", "weight": "lots"}]')

    response = staff["admin"].post(reverse("admin:triggers_experiment_add"), bad)

    assert response.status_code == 200
    assert "arms[0].weight: Expected a whole number" in " ".join(response.context["adminform"].form.errors["arms"])
    assert not Experiment.objects.exists()


def test_an_auditor_reads_experiments_but_changes_nothing(staff, welcome):
    experiment = running(welcome)
    auditor = staff["auditor"]

    assert auditor.get(reverse("admin:triggers_experiment_change", args=[experiment.pk])).status_code == 200
    assert auditor.post(reverse("admin:triggers_experiment_add"), experiment_form(welcome)).status_code == 403
    changed = experiment_form(welcome, key=experiment.key, name="renamed")
    auditor.post(reverse("admin:triggers_experiment_change", args=[experiment.pk]), changed)
    auditor.post(
        reverse("admin:triggers_experiment_changelist"), {"action": "stop", "_selected_action": [experiment.pk]}
    )
    experiment.refresh_from_db()
    assert (experiment.name, experiment.stopped_at) == ("test", None)
