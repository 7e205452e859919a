"""Cohort and stage definitions as data: validated on save, versioned, loaded from and dumped to a file.

The file (JSON, `usage/shipped/default.json` is the shipped one) lets definitions live in git:
`{"format": 1, "cohorts": [{"key", "name", "description", "condition", "enabled"}, …],
"stages": [{… and "order"}, …], "triggers": [...]}`. Loading is idempotent: a definition whose condition
changed gets the next version (its members are re-evaluated against it), one whose text alone changed keeps
its version, and nothing happens to an unchanged one.

Sections owned by apps above this one (the triggers) are registered at their app's ready with
`definition_section_register`: usage cannot import them, yet one file is checked, loaded (in one
transaction, cohorts and stages first) and dumped whole, every problem named by its path.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import transaction

from usage.conditions import condition_errors
from usage.models import Cohort, Definition, Stage

FORMAT = 1
SHIPPED = Path(__file__).resolve().parent / "shipped" / "default.json"
KINDS: dict[str, type[Definition]] = {"cohorts": Cohort, "stages": Stage}
TEXT_FIELDS = ("name", "description", "enabled")


class DefinitionsInvalid(ValueError):
    """A definitions file or form with problems, by path ("stages[2].condition.all[0].op": [...])."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{path}: {' '.join(messages)}" for path, messages in errors.items()))
        self.errors = errors


@dataclass
class LoadReport:
    created: list[str] = field(default_factory=list)
    new_versions: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)


#: A section's problems by their full path (`triggers[2].when.kind`), given its items and the whole document
#: (a trigger may name a cohort the same file defines).
SectionValidate = Callable[[list[Any], dict[str, Any]], dict[str, list[str]]]
#: Create or update a validated section's items in the caller's transaction, adding to the report.
SectionLoad = Callable[[list[dict[str, Any]], LoadReport, bool], None]
#: The section's items as the file holds them (what its load takes back unchanged).
SectionDump = Callable[[], list[dict[str, Any]]]


@dataclass(frozen=True)
class Section:
    name: str
    validate: SectionValidate
    load: SectionLoad
    dump: SectionDump


_sections: dict[str, Section] = {}


def definition_section_register(name: str, *, validate: SectionValidate, load: SectionLoad, dump: SectionDump) -> None:
    """Make `name` a section of the definitions file (registering again replaces it)."""
    if name in KINDS or name == "format":
        raise ValueError(f"{name!r} is a section of usage's own.")
    _sections[name] = Section(name=name, validate=validate, load=load, dump=dump)


def definition_sections() -> tuple[str, ...]:
    """Every section a file may hold, in load order."""
    return (*KINDS, *_sections)


def definition_errors(kind: str, item: Any, *, cohort_keys: frozenset[str] | None = None) -> dict[str, list[str]]:
    """Problems of one definition (its fields and its condition tree), by path."""
    errors: dict[str, list[str]] = {}
    if not isinstance(item, dict):
        return {"": ["Expected an object with key, name and condition."]}
    key = item.get("key")
    if not (isinstance(key, str) and key and key.replace("_", "").isalnum() and key.islower()):
        errors["key"] = ["Expected a lower-case key of letters, digits and underscores."]
    if not (isinstance(item.get("name"), str) and item["name"].strip()):
        errors["name"] = ["Expected a non-empty name."]
    if kind == "stages" and not (isinstance(item.get("order"), int) and item["order"] >= 0):
        errors["order"] = ["Expected a whole number, 0 or more."]
    if "enabled" in item and not isinstance(item["enabled"], bool):
        errors["enabled"] = ["Expected true or false."]
    if "condition" not in item:
        errors["condition"] = ["Required."]
    else:
        tree_errors = condition_errors(item["condition"], cohorts=kind == "stages", known_cohorts=cohort_keys)
        errors.update(
            {f"condition.{path}" if path != "condition" else path: msgs for path, msgs in tree_errors.items()}
        )
    return errors


def definitions_validate(document: Any) -> None:
    """Raise DefinitionsInvalid naming every problem of a definitions document."""
    if not isinstance(document, dict):
        raise DefinitionsInvalid({"": [f"Expected a JSON object with format, {', '.join(definition_sections())}."]})
    errors: dict[str, list[str]] = {}
    if document.get("format") != FORMAT:
        errors["format"] = [f"Expected {FORMAT} (this engine's definitions format)."]
    for name in sorted(set(document) - {"format", *definition_sections()}):
        errors[name] = [f"Unknown section; expected {', '.join(definition_sections())}."]
    cohort_keys = frozenset(
        item.get("key") for item in document.get("cohorts") or [] if isinstance(item, dict)
    ) | frozenset(Cohort.objects.values_list("key", flat=True))
    for kind in KINDS:
        items = document.get(kind, [])
        if not isinstance(items, list):
            errors[kind] = ["Expected a list."]
            continue
        seen: set[str] = set()
        for index, item in enumerate(items):
            for path, messages in definition_errors(kind, item, cohort_keys=cohort_keys).items():
                errors[f"{kind}[{index}].{path}" if path else f"{kind}[{index}]"] = messages
            key = item.get("key") if isinstance(item, dict) else None
            if key in seen:
                errors[f"{kind}[{index}].key"] = [f"Duplicate key {key!r}."]
            seen.add(key)
    for section in _sections.values():
        items = document.get(section.name, [])
        if isinstance(items, list):
            errors.update(section.validate(items, document))
        else:
            errors[section.name] = ["Expected a list."]
    if errors:
        raise DefinitionsInvalid(errors)


def definition_save(definition: Definition, *, condition: Any) -> bool:
    """Set a definition's condition, bumping its version when the condition changes; True if it did.

    The caller has validated it (forms and files do); saving is the caller's.
    """
    if definition.pk is not None and definition.condition != condition:
        definition.version += 1
        definition.condition = condition
        return True
    definition.condition = condition
    return False


def definitions_load(document: dict[str, Any], *, dry_run: bool = False) -> LoadReport:
    """Create or update every definition in a validated document, in one transaction: cohorts and stages,
    then each registered section (triggers), so a trigger may name a cohort the same file brings.

    Definitions not in the document are left alone (a file may carry only some); `dry_run` reports what
    would change and changes nothing.
    """
    definitions_validate(document)
    report = LoadReport()
    with transaction.atomic():
        for kind, model in KINDS.items():
            for item in document.get(kind, []):
                _load_one(model, item, report)
        for section in _sections.values():
            section.load(document.get(section.name, []), report, dry_run)
        if dry_run:
            transaction.set_rollback(True)
    return report


def _load_one(model: type[Definition], item: dict[str, Any], report: LoadReport) -> None:
    label = f"{model._meta.model_name} {item['key']}"
    definition = model.objects.filter(key=item["key"]).first()
    created = definition is None
    definition = definition or model(key=item["key"])
    before = {name: getattr(definition, name) for name in (*TEXT_FIELDS, "order") if hasattr(definition, name)}
    definition.name = item["name"]
    definition.description = item.get("description", "")
    definition.enabled = item.get("enabled", True)
    if model is Stage:
        definition.order = item["order"]
    new_version = definition_save(definition, condition=item["condition"])
    after = {name: getattr(definition, name) for name in before}
    if created:
        report.created.append(label)
    elif new_version:
        report.new_versions.append(f"{label} (now v{definition.version})")
    elif before != after:
        report.updated.append(label)
    else:
        report.unchanged.append(label)
        return
    if not definition.enabled and before.get("enabled", True):
        report.disabled.append(label)
    definition.save()


def definitions_dump() -> dict[str, Any]:
    """Every definition as a document `definitions_load` takes back unchanged (versions for information)."""
    document: dict[str, Any] = {"format": FORMAT}
    for kind, model in KINDS.items():
        items = []
        for definition in model.objects.order_by(*(["order"] if model is Stage else []), "key"):
            item = {"key": definition.key, "name": definition.name, "description": definition.description}
            if model is Stage:
                item["order"] = definition.order
            item |= {"enabled": definition.enabled, "version": definition.version, "condition": definition.condition}
            items.append(item)
        document[kind] = items
    for section in _sections.values():
        document[section.name] = section.dump()
    return document


def shipped_document() -> dict[str, Any]:
    return json.loads(SHIPPED.read_text())
