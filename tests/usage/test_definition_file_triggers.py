"""One versioned file for cohorts, stages and triggers: `behaviour_definitions` checks, loads (in one
transaction) and dumps the triggers section that the triggers app registers, every problem by its path."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from triggers.models import Trigger
from usage.definitions import DefinitionsInvalid, definitions_dump, definitions_load, definitions_validate
from usage.models import Cohort

pytestmark = pytest.mark.django_db

EXPORTERS = {
    "key": "heavy_exporters",
    "name": "Heavy exporters",
    "description": "Export on most days.",
    "condition": {"metric": "active_days_7d", "op": ">=", "value": 5},
}
ON_ENTRY = {
    "key": "exporters_welcome",
    "name": "Welcome heavy exporters",
    "when": {"kind": "cohort", "cohort": "heavy_exporters", "change": "entered"},
    "actions": [{"channel": "email", "template": "exporters_welcome"}],
    "enabled": False,
}
FAILED_EXPORTS = {
    "key": "failed_exports",
    "name": "Failed exports",
    "when": {
        "kind": "count",
        "count": 3,
        "within_seconds": 3600,
        "event": {
            "type": "usage.recorded",
            "where": [
                {"path": "feature", "op": "==", "value": "audit.export"},
                {"path": "outcome", "op": "==", "value": "error"},
            ],
        },
    },
    "actions": [{"channel": "ticket", "template": "failed_exports"}],
    "transactional": True,
}


def document() -> dict:
    return {"format": 1, "cohorts": [EXPORTERS], "stages": [], "triggers": [ON_ENTRY, FAILED_EXPORTS]}


def ours() -> list[str]:
    return list(Trigger.objects.filter(key__in=["exporters_welcome", "failed_exports"]).values_list("key", flat=True))


def test_one_file_loads_cohorts_and_the_triggers_naming_them_together():
    # when
    report = definitions_load(document())

    # then
    assert report.created == ["cohort heavy_exporters", "trigger exporters_welcome", "trigger failed_exports"]
    welcome = Trigger.objects.get(key="exporters_welcome")
    assert (welcome.enabled, welcome.version, welcome.when["cohort"]) == (False, 1, "heavy_exporters")
    assert Trigger.objects.get(key="failed_exports").transactional


def test_loading_the_same_file_again_changes_nothing_and_a_changed_behaviour_is_a_new_version():
    # given
    definitions_load(document())
    changed = document()
    changed["triggers"][1] = {**FAILED_EXPORTS, "when": {**FAILED_EXPORTS["when"], "count": 5}}
    changed["triggers"][0] = {**ON_ENTRY, "name": "Welcome, exporters"}

    # when
    again = definitions_load(document())
    edited = definitions_load(changed)

    # then
    assert (again.created, again.new_versions, again.updated) == ([], [], [])
    assert set(again.unchanged) == {"cohort heavy_exporters", "trigger exporters_welcome", "trigger failed_exports"}
    assert edited.new_versions == ["trigger failed_exports (now v2)"]
    assert edited.updated == ["trigger exporters_welcome"]


def test_every_problem_is_named_by_its_path_and_nothing_is_loaded():
    # given
    broken = document()
    broken["cohorts"][0] = {**EXPORTERS, "condition": {"metric": "active_days_7d", "op": "about", "value": 5}}
    bad_where = copy.deepcopy(FAILED_EXPORTS)
    bad_where["when"]["event"]["where"][0]["op"] = "like"
    unknown_cohort = {**ON_ENTRY, "key": "nobody_home", "when": {**ON_ENTRY["when"], "cohort": "no_such_cohort"}}
    broken["triggers"] = [ON_ENTRY, unknown_cohort, bad_where, {**ON_ENTRY, "colour": "red"}]
    broken["experiments"] = []

    # when
    with pytest.raises(DefinitionsInvalid) as raised:
        definitions_load(broken)

    # then
    assert set(raised.value.errors) == {
        "cohorts[0].condition.op",
        "triggers[1].when.cohort",
        "triggers[2].when.event.where[0].op",
        "triggers[3]",
        "triggers[3].key",
        "experiments",
    }
    assert raised.value.errors["triggers[1].when.cohort"] == [
        "Unknown cohort 'no_such_cohort': define it first (here or in the database)."
    ]
    assert not Cohort.objects.filter(key="heavy_exporters").exists()
    assert ours() == []


def test_a_dry_run_rolls_back_cohorts_and_triggers_alike():
    report = definitions_load(document(), dry_run=True)

    assert len(report.created) == 3
    assert not Cohort.objects.filter(key="heavy_exporters").exists() and ours() == []


def test_the_dump_holds_the_triggers_and_loads_back_unchanged_through_the_command(tmp_path: Path, capsys):
    # given
    definitions_load(document())
    target = tmp_path / "definitions.json"

    # when
    call_command("behaviour_definitions", "dump", str(target))
    call_command("behaviour_definitions", "check", str(target))
    call_command("behaviour_definitions", "load", str(target))

    # then
    dumped = json.loads(target.read_text())
    assert {"format", "cohorts", "stages", "triggers"} <= set(dumped)
    assert [item["key"] for item in dumped["triggers"] if item["key"] in ours()] == sorted(ours())
    out = capsys.readouterr().out
    assert "valid." in out and "created" not in out and "new version" not in out
    assert dumped == definitions_dump()


def test_the_command_names_a_trigger_problem_by_its_path(tmp_path: Path):
    target = tmp_path / "bad.json"
    bad = document()
    bad["triggers"][1] = {**FAILED_EXPORTS, "actions": [{"channel": "carrier_pigeon", "template": "x"}]}
    target.write_text(json.dumps(bad))

    with pytest.raises(CommandError, match=r"triggers\[1\]\.actions\[0\]\.channel: Expected one of the channels"):
        call_command("behaviour_definitions", "load", str(target))
    assert ours() == []


def test_trigger_definitions_takes_the_triggers_section_alone(tmp_path: Path):
    # given: the cohort is in the database, so the triggers section loads by itself
    definitions_load({"format": 1, "cohorts": [EXPORTERS]})
    target = tmp_path / "definitions.json"
    target.write_text(json.dumps(document()))

    # when
    call_command("trigger_definitions", "load", str(target))

    # then
    assert sorted(ours()) == ["exporters_welcome", "failed_exports"]
    definitions_validate(definitions_dump())
