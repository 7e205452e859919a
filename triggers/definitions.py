"""Triggers in the versioned definitions file, beside cohorts and stages (`usage/definitions.py`): validated
as a whole, every problem named by its path (`triggers[2].when.event.where[0].op`), loaded in one transaction.

The section: `"triggers": [{"key", "name", "description", "when", "audience", "team", "actions",
"follow_up", "cap_seconds", "reentry", "transactional", "priority", "enabled"}, …]`. It is registered with
usage's file (`definition_section_register`, at this app's ready), so `manage.py behaviour_definitions`
loads, dumps and checks cohorts, stages and triggers together; `manage.py trigger_definitions` reads and
writes a file's triggers section alone. Loading is idempotent: a trigger whose behaviour changed gets the
next version, one whose words alone changed keeps it, an unchanged one is left alone, and triggers not in
the file are not touched. A trigger may name only cohorts and stages that exist or that the file defines.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from triggers.models import Trigger
from triggers.services import date_timers_sync, trigger_save
from triggers.spec import trigger_errors
from usage.definitions import LoadReport, definition_section_register
from usage.models import Cohort, Stage

SECTION = "triggers"

FORMAT = 1
TEXT_FIELDS = ("name", "description")
DEFAULTS: dict[str, Any] = {
    "description": "", "enabled": True, "priority": 0, "audience": Trigger.Audience.USER, "team": "",
    "follow_up": None, "cap_seconds": None, "reentry": Trigger.Reentry.EVERY_TIME, "transactional": False,
}  # fmt: skip
ITEM_KEYS = frozenset({"key", "version", "when", "actions", *TEXT_FIELDS, *DEFAULTS})


class TriggersInvalid(ValueError):
    """A triggers file with problems, by path."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{path}: {' '.join(messages)}" for path, messages in errors.items()))
        self.errors = errors


def triggers_validate(document: Any) -> None:
    """Raise TriggersInvalid naming every problem of a file's triggers section (and its format)."""
    if not isinstance(document, dict):
        raise TriggersInvalid({"": ["Expected a JSON object with format and triggers."]})
    errors: dict[str, list[str]] = {}
    if document.get("format") != FORMAT:
        errors["format"] = [f"Expected {FORMAT} (this engine's triggers format)."]
    items = document.get(SECTION, [])
    if not isinstance(items, list):
        raise TriggersInvalid(errors | {SECTION: ["Expected a list."]})
    errors.update(triggers_section_errors(items, {}))  # loaded alone: only the cohorts and stages there are
    if errors:
        raise TriggersInvalid(errors)


def triggers_section_errors(items: list[Any], document: dict[str, Any]) -> dict[str, list[str]]:
    """Every problem of the triggers section's items, by full path; `document`: the whole file, whose
    cohorts and stages a trigger may name besides those that exist."""
    known = _known_keys(document)
    errors: dict[str, list[str]] = {}
    seen: set[Any] = set()
    for index, item in enumerate(items):
        errors.update(_item_errors(item, f"{SECTION}[{index}]", known))
        key = item.get("key") if isinstance(item, dict) else None
        if key in seen:
            errors[f"{SECTION}[{index}].key"] = [f"Duplicate key {key!r}."]
        seen.add(key)
    return errors


def _known_keys(document: dict[str, Any]) -> dict[str, frozenset[str]]:
    """The cohort and stage keys a trigger may name: those in the database and those the file brings."""

    def keys(kind: str) -> set[str]:
        items = document.get(kind) if isinstance(document.get(kind), list) else []
        return {item["key"] for item in items if isinstance(item, dict) and isinstance(item.get("key"), str)}

    return {
        "cohort": frozenset(keys("cohorts") | set(Cohort.objects.values_list("key", flat=True))),
        "stage": frozenset(keys("stages") | set(Stage.objects.values_list("key", flat=True))),
    }


def _item_errors(item: Any, at: str, known: dict[str, frozenset[str]]) -> dict[str, list[str]]:
    if not isinstance(item, dict):
        return {at: ["Expected an object with key, name, when and actions."]}
    errors = {f"{at}.{path}": messages for path, messages in trigger_errors(DEFAULTS | item).items()}
    extra = sorted(set(item) - ITEM_KEYS)
    if extra:
        errors[at] = [f"Unexpected key(s): {', '.join(extra)}."]
    when = item.get("when") if isinstance(item.get("when"), dict) else {}
    names = {"cohort": ("cohort",), "stage": ("from", "to")}.get(when.get("kind"), ())
    for name in names:
        value, kind = when.get(name), when["kind"]
        if isinstance(value, str) and value and value not in known[kind] and f"{at}.when.{name}" not in errors:
            errors[f"{at}.when.{name}"] = [f"Unknown {kind} {value!r}: define it first (here or in the database)."]
    return errors


def triggers_load(document: dict[str, Any], *, dry_run: bool = False) -> LoadReport:
    """Create or update every trigger in a validated document, in one transaction (`dry_run`: report only)."""
    triggers_validate(document)
    report = LoadReport()
    with transaction.atomic():
        triggers_section_load(document.get(SECTION, []), report, dry_run)
        if dry_run:
            transaction.set_rollback(True)
    return report


def triggers_section_load(items: list[dict[str, Any]], report: LoadReport, dry_run: bool = False) -> None:
    """Create or update validated triggers in the caller's transaction; date triggers created or changed
    set their timers (not on a dry run, which the caller rolls back)."""
    for item in items:
        _load_one(DEFAULTS | item, report)
    if not dry_run:
        _dates_sync(report)


def _load_one(item: dict[str, Any], report: LoadReport) -> None:
    trigger = Trigger.objects.filter(key=item["key"]).first()
    label = f"trigger {item['key']}"
    if trigger is None:
        trigger_save(trigger=Trigger(**{name: item[name] for name in ITEM_KEYS - {"version"} if name in item}))
        report.created.append(label)
        return
    before = (trigger.version, [getattr(trigger, name) for name in (*TEXT_FIELDS, *Trigger.BEHAVIOUR_FIELDS)])
    for name in (*TEXT_FIELDS, "when", "actions", *DEFAULTS):
        setattr(trigger, name, item[name])
    after = [getattr(trigger, name) for name in (*TEXT_FIELDS, *Trigger.BEHAVIOUR_FIELDS)]
    if after == before[1]:
        report.unchanged.append(label)
        return
    trigger_save(trigger=trigger)
    if trigger.version != before[0]:
        report.new_versions.append(f"{label} (now v{trigger.version})")
    else:
        report.updated.append(label)


def _dates_sync(report: LoadReport) -> None:
    """Date triggers created or changed by this load set their timers for every workspace now."""
    labels = (*report.created, *report.new_versions)
    keys = [label.split()[1] for label in labels if label.startswith("trigger ")]
    for trigger in Trigger.objects.filter(key__in=keys, enabled=True):
        if trigger.when.get("kind") == "date":
            date_timers_sync(trigger=trigger)


def triggers_dump() -> dict[str, Any]:
    """Every trigger as a document `triggers_load` takes back unchanged (versions for information)."""
    return {"format": FORMAT, SECTION: triggers_section_dump()}


def triggers_section_dump() -> list[dict[str, Any]]:
    fields = ("key", *TEXT_FIELDS, "version", *Trigger.BEHAVIOUR_FIELDS)
    return [{name: getattr(trigger, name) for name in fields} for trigger in Trigger.objects.order_by("key")]


def triggers_section_register() -> None:
    """Make triggers a section of usage's definitions file (called at this app's ready)."""
    definition_section_register(
        SECTION, validate=triggers_section_errors, load=triggers_section_load, dump=triggers_section_dump
    )
