"""Definitions as data: the shipped ones load, a file round-trips, a changed condition gets a new version,
and a bad file changes nothing and names every problem."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from usage.definitions import (
    DefinitionsInvalid,
    definitions_dump,
    definitions_load,
    definitions_validate,
    shipped_document,
)
from usage.models import Cohort, Stage

pytestmark = pytest.mark.django_db

CONTRACT_COHORTS = {
    "feature_shallow_frequent",
    "plan_limited_power_user",
    "at_risk",
    "multi_product_candidate",
    "api_partnership_prospect",
}
CONTRACT_STAGES = ["at_risk", "dormant", "expanding", "adopted", "activated", "onboarding"]


def test_the_shipped_definitions_are_valid_and_installed_by_migrate():
    definitions_validate(shipped_document())
    assert set(Cohort.objects.values_list("key", flat=True)) == CONTRACT_COHORTS
    assert list(Stage.objects.order_by("order").values_list("key", flat=True)) == CONTRACT_STAGES
    assert all(cohort.version == 1 and cohort.enabled for cohort in Cohort.objects.all())


def test_loading_the_shipped_file_again_changes_nothing():
    report = definitions_load(shipped_document())
    assert (report.created, report.new_versions, report.updated) == ([], [], [])
    shipped_triggers = len(shipped_document()["triggers"])  # the same file's (triggers/definitions.py)
    assert len(report.unchanged) == len(CONTRACT_COHORTS) + len(CONTRACT_STAGES) + shipped_triggers


def test_a_changed_condition_gets_the_next_version_and_text_alone_does_not():
    document = shipped_document()
    document["cohorts"][0]["condition"]["all"][0]["value"] = 5
    document["cohorts"][1]["description"] = "Reworded."
    report = definitions_load(document)
    first, second = (Cohort.objects.get(key=item["key"]) for item in document["cohorts"][:2])
    assert (first.version, second.version) == (2, 1)
    assert report.new_versions == [f"cohort {first.key} (now v2)"]
    assert report.updated == [f"cohort {second.key}"]


def test_dump_and_load_round_trip():
    dumped = definitions_dump()
    report = definitions_load(json.loads(json.dumps(dumped)))
    assert report.created == report.new_versions == report.updated == []


def test_a_bad_document_names_every_problem_and_changes_nothing():
    document = shipped_document()
    broken = copy.deepcopy(document)
    broken["cohorts"][0]["condition"]["all"][1]["op"] = "about"
    broken["stages"][2]["order"] = -1
    broken["cohorts"].append({"key": "New Cohort", "name": "", "condition": {"metric": "x", "op": ">", "value": 1}})
    with pytest.raises(DefinitionsInvalid) as caught:
        definitions_load(broken)
    assert set(caught.value.errors) == {
        "cohorts[0].condition.all[1].op",
        "stages[2].order",
        "cohorts[5].key",
        "cohorts[5].name",
        "cohorts[5].condition.metric",
    }
    assert not Cohort.objects.filter(key="New Cohort").exists()


def test_dry_run_reports_and_changes_nothing():
    document = shipped_document()
    document["stages"][0]["condition"] = {"field": "at_risk", "op": "==", "value": True}
    report = definitions_load(document, dry_run=True)
    assert report.new_versions == ["stage at_risk (now v2)"]
    assert Stage.objects.get(key="at_risk").version == 1


def test_the_command_dumps_checks_and_loads(tmp_path: Path, capsys):
    target = tmp_path / "definitions.json"
    call_command("behaviour_definitions", "dump", str(target))
    document = json.loads(target.read_text())
    document["cohorts"][0]["enabled"] = False
    target.write_text(json.dumps(document))

    call_command("behaviour_definitions", "check", str(target))
    call_command("behaviour_definitions", "load", str(target))

    out = capsys.readouterr().out
    assert "valid." in out and "disabled: cohort api_partnership_prospect" in out
    assert not Cohort.objects.get(key="api_partnership_prospect").enabled


def test_the_command_refuses_a_bad_file_naming_the_fix(tmp_path: Path):
    target = tmp_path / "bad.json"
    target.write_text('{"format": 2}')
    with pytest.raises(CommandError, match=r"(?s)Nothing was changed.*format: Expected 1"):
        call_command("behaviour_definitions", "load", str(target))
    target.write_text("{not json")
    with pytest.raises(CommandError, match="not valid JSON"):
        call_command("behaviour_definitions", "load", str(target))


def test_help_explains_the_command():
    result = subprocess.run(
        [sys.executable, "manage.py", "behaviour_definitions", "--help"],
        cwd=Path(__file__).resolve().parents[2],
        env={"DEBUG": "on", "ENV_FILE": "", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "versioned file" in result.stdout and "--dry-run" in result.stdout
