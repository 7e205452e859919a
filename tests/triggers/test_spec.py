"""Triggers are data: validated with each problem named by field and path, versioned on every change."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from tests.triggers.conftest import make_trigger
from triggers.checks import check_trigger_settings
from triggers.models import Trigger
from triggers.services import trigger_save
from triggers.spec import filter_matches, trigger_errors

pytestmark = pytest.mark.django_db

CHANNELS = ("email", "slack")
TYPES = frozenset({"usage.recorded", "trial.started"})


def errors_of(**document) -> dict[str, list[str]]:
    base = {"key": "k", "name": "K", "when": {"kind": "event", "event": {"type": "usage.recorded"}},
            "actions": [{"channel": "email", "template": "t"}]}  # fmt: skip
    return trigger_errors(base | document, channels=CHANNELS, event_types=TYPES)


def test_a_valid_trigger_has_no_errors():
    assert errors_of() == {}


def test_each_problem_is_named_by_its_path():
    errors = errors_of(
        when={"kind": "count", "event": {"type": "usage.recorded", "where": [{"path": "feature", "op": "~"}]},
              "count": 0, "within_seconds": 3600.5},
        actions=[{"channel": "fax", "template": ""}],
        follow_up={"goal": {"condition": {"metric": "no_such_metric", "op": ">=", "value": 1}}, "within_seconds": 60},
    )  # fmt: skip

    assert set(errors) == {
        "when.event.where[0].op", "when.count", "when.within_seconds", "actions[0].channel", "actions[0].template",
        "follow_up.goal.condition.metric",
    }  # fmt: skip
    assert "fax" not in errors["actions[0].channel"][0] and "email, slack" in errors["actions[0].channel"][0]


@pytest.mark.parametrize(
    ("when", "path"),
    [
        ({"kind": "sometimes"}, "when.kind"),
        ({"kind": "event", "event": {"type": "no.such"}}, "when.event.type"),
        ({"kind": "stall", "start": {"type": "usage.recorded"}, "within_seconds": 60}, "when.finish"),
        ({"kind": "silence", "for_seconds": 0}, "when.for_seconds"),
        ({"kind": "cohort", "cohort": "at_risk", "change": "joined"}, "when.change"),
        ({"kind": "stage", "from": None, "to": None}, "when"),
        ({"kind": "date", "field": "churned_at", "days_before": 3}, "when.field"),
        ({"kind": "event", "event": {"type": "usage.recorded"}, "extra": 1}, "when"),
    ],
)
def test_every_kind_of_when_is_checked(when, path):
    assert path in errors_of(when=when)


def test_the_model_raises_errors_by_field_for_the_admin_form():
    trigger = Trigger(key="k", name="K", when={"kind": "silence", "for_seconds": -1}, actions=[])

    with pytest.raises(ValidationError) as raised:
        trigger_save(trigger=trigger)

    assert set(raised.value.message_dict) == {"when", "actions"}
    [message] = raised.value.message_dict["when"]
    assert message == "when.for_seconds: Expected whole seconds from 1 to 31622400 (a year)."
    assert not Trigger.objects.exists()


def test_a_change_of_behaviour_bumps_the_version_and_a_change_of_words_does_not():
    trigger = make_trigger("welcome", {"kind": "event", "event": {"type": "trial.started"}})
    assert trigger.version == 1

    trigger.name = "Welcome aboard"
    assert trigger_save(trigger=trigger).version == 1
    trigger.priority = 5
    assert trigger_save(trigger=trigger).version == 2
    trigger.when = {"kind": "event", "event": {"type": "trial.started", "where": [{"path": "plan", "op": "==",
                                                                                    "value": "pro"}]}}  # fmt: skip
    assert trigger_save(trigger=trigger).version == 3
    assert Trigger.objects.get().version == 3


@pytest.mark.parametrize(
    ("where", "data", "expected"),
    [
        ({"path": "feature", "op": "==", "value": "export"}, {"feature": "export"}, True),
        ({"path": "feature", "op": "in", "value": ["a", "b"]}, {"feature": "c"}, False),
        ({"path": "count", "op": ">=", "value": 3}, {"count": 3}, True),
        ({"path": "count", "op": ">", "value": 3}, {"count": "many"}, False),
        ({"path": "meta.step", "op": "==", "value": 2}, {"meta": {"step": 2}}, True),
        ({"path": "outcome", "op": "exists", "value": False}, {}, True),
        ({"path": "outcome", "op": "!=", "value": "error"}, {}, False),  # missing satisfies no comparison
    ],
)
def test_filters_match_the_data(where, data, expected):
    assert filter_matches({"type": "usage.recorded", "where": [where]}, "usage.recorded", data) is expected
    assert filter_matches({"type": "usage.recorded", "where": [where]}, "trial.started", data) is False


@pytest.mark.parametrize(
    ("name", "value", "code"),
    [
        ("TRIGGERS_WORKSPACE_CAP", (0, 86400), "lifecycle.E080"),
        ("TRIGGERS_PERSON_CAP", (3,), "lifecycle.E081"),
        ("TRIGGERS_QUIET_HOURS", ("21:00", "25:00"), "lifecycle.E082"),
        ("TRIGGERS_QUIET_HOURS", ("08:00", "08:00"), "lifecycle.E082"),
    ],
)
def test_a_wrong_cap_or_quiet_hours_setting_stops_the_engine_at_its_checks(settings, name, value, code):
    setattr(settings, name, value)

    assert [error.id for error in check_trigger_settings(None)] == [code]


def test_the_defaults_and_off_pass_the_checks(settings):
    assert check_trigger_settings(None) == []  # the tests' own: off
    del settings.TRIGGERS_QUIET_HOURS, settings.TRIGGERS_WORKSPACE_CAP, settings.TRIGGERS_PERSON_CAP
    assert check_trigger_settings(None) == []  # the defaults
