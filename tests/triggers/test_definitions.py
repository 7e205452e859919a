"""Triggers in a versioned file: every problem by its path, loads idempotent, a dump loads back unchanged."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command

from triggers.definitions import TriggersInvalid, triggers_dump, triggers_load, triggers_validate
from triggers.models import Trigger

pytestmark = pytest.mark.django_db

STALLED = {
    "key": "wizard_stalled", "name": "Setup wizard stalled", "priority": 5, "cap_seconds": 86400,
    "when": {"kind": "stall", "within_seconds": 172800, "key": "flow",
             "start": {"type": "usage.recorded", "where": [{"path": "feature", "op": "==", "value": "wizard.start"}]},
             "finish": {"type": "usage.recorded", "where": [{"path": "feature", "op": "==", "value": "wizard.done"}]}},
    "actions": [{"channel": "email", "template": "wizard_help", "params": {"cta": "/setup"}}],
    "follow_up": {"goal": {"event": {"type": "usage.recorded"}}, "within_seconds": 86400,
                  "escalate": [{"channel": "slack", "template": "csm_call"}], "escalate_to": "owner_rep"},
}  # fmt: skip


def test_every_problem_of_a_file_is_named_by_its_path():
    bad = {**STALLED, "key": "Bad Key", "reentry": "sometimes", "colour": "red",
           "when": {**STALLED["when"], "within_seconds": 0}}  # fmt: skip
    document = {"format": 2, "triggers": [STALLED, bad, {**STALLED}]}

    with pytest.raises(TriggersInvalid) as raised:
        triggers_validate(document)

    assert set(raised.value.errors) == {
        "format", "triggers[1]", "triggers[1].key", "triggers[1].reentry", "triggers[1].when.within_seconds",
        "triggers[2].key",
    }  # fmt: skip
    assert raised.value.errors["triggers[2].key"] == ["Duplicate key 'wizard_stalled'."]


def test_loading_is_idempotent_and_versions_follow_behaviour_not_words():
    first = triggers_load({"format": 1, "triggers": [STALLED]})
    again = triggers_load({"format": 1, "triggers": [STALLED]})
    reworded = triggers_load({"format": 1, "triggers": [{**STALLED, "name": "Wizard stalled"}]})
    capped = triggers_load({"format": 1, "triggers": [{**STALLED, "name": "Wizard stalled", "cap_seconds": 3600}]})

    assert (first.created, again.unchanged, reworded.updated) == (
        ["trigger wizard_stalled"],
        ["trigger wizard_stalled"],
        ["trigger wizard_stalled"],
    )
    assert capped.new_versions == ["trigger wizard_stalled (now v2)"]
    assert Trigger.objects.get().version == 2


def test_a_dump_loads_back_unchanged_through_the_command(tmp_path, capsys):
    triggers_load({"format": 1, "triggers": [STALLED]})
    path = tmp_path / "triggers.json"
    call_command("trigger_definitions", "dump", str(path))

    call_command("trigger_definitions", "load", str(path))

    assert "1 unchanged." in capsys.readouterr().out
    assert json.loads(path.read_text()) == triggers_dump()


def test_the_command_refuses_a_bad_file_and_changes_nothing(tmp_path):
    path = tmp_path / "triggers.json"
    path.write_text(json.dumps({"format": 1, "triggers": [{**STALLED, "actions": []}]}))

    with pytest.raises(CommandError, match=r"triggers\[0\]\.actions: Expected a non-empty list of actions\."):
        call_command("trigger_definitions", "load", str(path))
    assert not Trigger.objects.exists()
