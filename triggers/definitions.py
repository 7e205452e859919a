"""Triggers in a versioned file, like cohorts and stages (`usage/definitions.py`): validated as a whole,
every problem named by its path (`triggers[2].when.event.where[0].op`), loaded in one transaction.

The file: `{"format": 1, "triggers": [{"key", "name", "description", "when", "audience", "team",
"actions", "follow_up", "cap_seconds", "reentry", "transactional", "priority", "enabled"}, …]}`.
Loading is idempotent: a trigger whose behaviour changed gets the next version, one whose words alone
changed keeps it, an unchanged one is left alone, and triggers not in the file are not touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from triggers.models import Trigger
from triggers.services import date_timers_sync, trigger_save
from triggers.spec import trigger_errors

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


@dataclass
class LoadReport:
    created: list[str] = field(default_factory=list)
    new_versions: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def triggers_validate(document: Any) -> None:
    """Raise TriggersInvalid naming every problem of a triggers document."""
    if not isinstance(document, dict):
        raise TriggersInvalid({"": ["Expected a JSON object with format and triggers."]})
    errors: dict[str, list[str]] = {}
    if document.get("format") != FORMAT:
        errors["format"] = [f"Expected {FORMAT} (this engine's triggers format)."]
    items = document.get("triggers", [])
    if not isinstance(items, list):
        raise TriggersInvalid(errors | {"triggers": ["Expected a list."]})
    seen: set[Any] = set()
    for index, item in enumerate(items):
        errors.update(_item_errors(item, f"triggers[{index}]"))
        key = item.get("key") if isinstance(item, dict) else None
        if key in seen:
            errors[f"triggers[{index}].key"] = [f"Duplicate key {key!r}."]
        seen.add(key)
    if errors:
        raise TriggersInvalid(errors)


def _item_errors(item: Any, at: str) -> dict[str, list[str]]:
    if not isinstance(item, dict):
        return {at: ["Expected an object with key, name, when and actions."]}
    errors = {f"{at}.{path}": messages for path, messages in trigger_errors(DEFAULTS | item).items()}
    extra = sorted(set(item) - ITEM_KEYS)
    if extra:
        errors[at] = [f"Unexpected key(s): {', '.join(extra)}."]
    return errors


def triggers_load(document: dict[str, Any], *, dry_run: bool = False) -> LoadReport:
    """Create or update every trigger in a validated document, in one transaction (`dry_run`: report only)."""
    triggers_validate(document)
    report = LoadReport()
    with transaction.atomic():
        for item in document.get("triggers", []):
            _load_one(DEFAULTS | item, report)
        if not dry_run:
            _dates_sync(report)
        if dry_run:
            transaction.set_rollback(True)
    return report


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
    keys = [label.split()[1] for label in (*report.created, *report.new_versions)]
    for trigger in Trigger.objects.filter(key__in=keys, enabled=True):
        if trigger.when.get("kind") == "date":
            date_timers_sync(trigger=trigger)


def triggers_dump() -> dict[str, Any]:
    """Every trigger as a document `triggers_load` takes back unchanged (versions for information)."""
    fields = ("key", *TEXT_FIELDS, "version", *Trigger.BEHAVIOUR_FIELDS)
    return {
        "format": FORMAT,
        "triggers": [{name: getattr(trigger, name) for name in fields} for trigger in Trigger.objects.order_by("key")],
    }
