"""Compare a migrated copy of the pre-layers fixture with what the fixture held; print the findings as JSON.

Run by test_migrate_forward.py, after `manage.py migrate` of the current code, as
`python tests/migrations/check_forward.py DESCRIPTION.json` from the repository root with DATABASE_URL set.
It reads the database with the current code's models, the moved ones at their new labels (MOVES), and
prints {"problems": {check: [what is wrong, ...]}, "checked": {check: how many things were compared}}.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

#: Where each model that changed app lives now (issue 20). A model not named here keeps its label. Tables keep
#: their names (Meta.db_table), and so must content type ids, permissions and audit entries.
MOVES: dict[str, str] = {
    "events.workspacelock": "workspaces.workspacelock",
    "linking.reviewitem": "workspaces.reviewitem",
    "ops.heartbeat": "failures.heartbeat",
    "ops.errorkind": "failures.errorkind",
    "ops.sourceday": "events.sourceday",
    "ops.rollupcursor": "events.rollupcursor",
    "triggers.usagedaily": "usage.usagedaily",
    "triggers.usagedailyuser": "usage.usagedailyuser",
}

#: Fields a migration of the restructure may fill in where the fixture had them empty (None or ""); a value the
#: fixture had must stay as it was. alerts 0010 (restructure branch) gives customers routed before owners were
#: kept the rep their first rep alert went to.
FILLED_IN: dict[str, set[str]] = {
    "workspaces.workspace": {"owner", "owner_since", "owner_why"},
}

#: Tables a restructure may add to but never take from; their meaning (content type ids, who holds which
#: permission, which schedules exist) is checked on its own below. Every other table keeps exactly its rows.
MAY_GROW = {
    "django_migrations",
    "django_content_type",
    "auth_permission",
    "auth_group_permissions",
    "django_q_schedule",
}

#: Differences shown per model or group at most (the first ones say enough).
SHOWN = 5


def new_label(old: str) -> str:
    """'app.model' of a model now, from its label in the fixture."""
    return MOVES.get(old, old)


def new_permission(old: str) -> str:
    """'app.model:codename' of a permission now (codenames do not change: model names do not)."""
    model, _, codename = old.partition(":")
    return f"{new_label(model)}:{codename}"


def check_counts(description: dict[str, Any], state: Any) -> tuple[list[str], int]:
    """Every table of the fixture is still there with as many rows."""
    now = state.table_counts()
    problems = []
    for table, before in description["tables"].items():
        after = now.get(table)
        if after is None:
            problems.append(f"table {table} is gone ({before} rows in the fixture)")
        elif after < before or (after != before and table not in MAY_GROW):
            problems.append(f"table {table}: {after} rows, {before} in the fixture")
    return problems, len(description["tables"])


def model_at(label: str) -> Any:
    """The current model of a label, or None."""
    from django.apps import apps

    try:
        return apps.get_model(label)
    except (LookupError, ValueError):
        return None


def kept(label: str, name: str, before: Any, now: dict[str, Any]) -> bool:
    """The field still holds what the fixture held (or was empty there and a migration filled it in)."""
    if name not in now:
        return False
    return now[name] == before or (before in (None, "") and name in FILLED_IN.get(label, set()))


def check_rows(description: dict[str, Any], state: Any) -> tuple[list[str], int]:
    """Each fixture model is readable at its label now, on its old table, and every row has every field it had,
    with the same value (fields added since may be anywhere)."""
    problems: list[str] = []
    compared = 0
    for old, saved in description["models"].items():
        label = new_label(old)
        model = model_at(label)
        if model is None:
            problems.append(f"{old}: no model {label}")
            continue
        if model._meta.db_table != saved["table"]:
            problems.append(f"{label}: table {model._meta.db_table}, was {saved['table']}")
        rows = {json.dumps(row["pk"]): row["fields"] for row in state.model_rows(model)}
        differences = []
        for row in saved["rows"]:
            fields = rows.get(json.dumps(row["pk"]))
            if fields is None:
                differences.append(f"row {row['pk']} is missing")
                continue
            compared += 1
            changed = sorted(name for name, value in row["fields"].items() if not kept(label, name, value, fields))
            if changed:
                differences.append(f"row {row['pk']}: {', '.join(changed)} differ")
        problems += [f"{label} (was {old}): {difference}" for difference in differences[:SHOWN]]
    return problems, compared


def check_content_types(description: dict[str, Any], state: Any) -> tuple[list[str], int]:
    """A moved model's content type is the old row relabelled (same id, so permissions, audit entries and
    generic keys still point at it); no content type is left for the old label, nor for any model that is gone."""
    from django.contrib.contenttypes.models import ContentType

    now = state.content_types()
    problems = []
    for old, pk in description["content_types"].items():
        label = new_label(old)
        if now.get(label) != pk:
            problems.append(f"{label} (was {old}): content type {now.get(label)}, was {pk}")
        if label != old and old in now:
            problems.append(f"stale content type {old} (id {now[old]}) beside {label}")
    for content_type in ContentType.objects.order_by("pk"):
        if content_type.model_class() is None:
            problems.append(f"content type {content_type.app_label}.{content_type.model} names no model")
    return problems, len(description["content_types"])


def check_permissions(description: dict[str, Any], state: Any) -> tuple[list[str], int]:
    """Groups keep their members, and groups and users every permission they held, at the model's new label."""
    groups, users = state.groups(), state.user_permissions()
    problems: list[str] = []
    compared = 0
    for name, saved in description["groups"].items():
        group = groups.get(name)
        if group is None:
            problems.append(f"group {name} is gone")
            continue
        if group["members"] != saved["members"]:
            problems.append(f"group {name}: members {group['members']}, were {saved['members']}")
        lost = [new_permission(p) for p in saved["permissions"] if new_permission(p) not in group["permissions"]]
        compared += len(saved["permissions"])
        problems += [f"group {name} lost {permission}" for permission in lost[:SHOWN]]
    for name, saved in description["user_permissions"].items():
        lost = [new_permission(p) for p in saved if new_permission(p) not in users.get(name, [])]
        compared += len(saved)
        problems += [f"user {name} lost {permission}" for permission in lost[:SHOWN]]
    return problems, compared


def check_audit_entries(description: dict[str, Any], state: Any) -> tuple[list[str], int]:
    """Each audit entry of a moved model still names its object: the content type resolves to the model at its
    new label, that model finds the object, and the recorded changes are as they were."""
    from auditlog.models import LogEntry

    problems: list[str] = []
    compared = 0
    for old, saved in description["audit_entries"].items():
        model = model_at(new_label(old))
        if model is None:
            problems.append(f"{old}: no model {new_label(old)} for its audit entries")
            continue
        if [entry["pk"] for entry in state.audit_entries(model)] != [entry["pk"] for entry in saved]:
            problems.append(f"{new_label(old)}: audit entries differ from the fixture's")
        for entry in saved:
            found = LogEntry.objects.filter(pk=entry["pk"]).select_related("content_type").first()
            compared += 1
            if found is None:
                problems.append(f"audit entry {entry['pk']} is gone")
            elif found.content_type.model_class() is not model:
                about = f"{found.content_type.app_label}.{found.content_type.model}"
                problems.append(f"audit entry {entry['pk']} is about {about}, not {new_label(old)}")
            elif not model._default_manager.filter(pk=found.object_pk).exists():
                problems.append(f"audit entry {entry['pk']}: no {new_label(old)} {found.object_pk}")
            elif json.loads(json.dumps(found.changes)) != entry["changes"]:
                problems.append(f"audit entry {entry['pk']}: its changes differ")
    return problems, compared


def check_schedules(description: dict[str, Any], state: Any) -> tuple[list[str], int]:
    """Every schedule is still there, and what the cluster imports to run it (func, hook) imports."""
    from django.utils.module_loading import import_string

    now = state.schedules()
    problems = [
        f"schedule {name!r} is gone"
        for name in sorted({s["name"] for s in description["schedules"]} - {s["name"] for s in now})
    ]
    for schedule in now:
        for part in ("func", "hook"):
            path = schedule[part]
            if not path:
                continue
            try:
                target = import_string(path)
            except ImportError as error:
                problems.append(f"schedule {schedule['name']!r}: {part} {path} does not import ({error})")
                continue
            if not callable(target):
                problems.append(f"schedule {schedule['name']!r}: {part} {path} is not callable")
    return problems, len(now)


CHECKS = {
    "counts": check_counts,
    "rows": check_rows,
    "content_types": check_content_types,
    "permissions": check_permissions,
    "audit_entries": check_audit_entries,
    "schedules": check_schedules,
}


def main() -> None:
    """Set up the current code, run every check, print the findings."""
    description = json.loads(Path(sys.argv[1]).read_text())
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    sys.path[:0] = [os.getcwd(), str(Path(__file__).resolve().parent)]
    import django

    django.setup()
    import state

    findings: dict[str, dict[str, Any]] = {"problems": {}, "checked": {}}
    for name, check in CHECKS.items():
        findings["problems"][name], findings["checked"][name] = check(description, state)
    print(json.dumps(findings, indent=1))


if __name__ == "__main__":
    main()
