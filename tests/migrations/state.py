"""What a database holds, as plain JSON: the one description both sides of the migrate-forward test use.

`make_fixture.py` (run in the old checkout) writes it beside each fixture; `check_forward.py` (run by the
current code after `migrate`) reads the same things again and compares. Both import this file by path, so a
row is serialised the same way before and after and only a real change of the data can differ.
Needs a configured Django (`django.setup()`) and nothing of the project's own code.
"""

from __future__ import annotations

import json
from typing import Any

from django.apps import apps
from django.core import serializers
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection
from django.db.models import Model

#: The project's app labels at the fixture's commit (d253482).
OLD_PROJECT_APPS = ("workspaces", "events", "linking", "triggers", "usage", "sync", "alerts", "ops", "privacy")


def label(model: type[Model]) -> str:
    """'app_label.modelname', the key every part of the description uses for a model."""
    return f"{model._meta.app_label}.{model._meta.model_name}"


def table_counts() -> dict[str, int]:
    """Rows of every table in the database (not only Django's), by table name."""
    with connection.cursor() as cursor:
        names = sorted(info.name for info in connection.introspection.get_table_list(cursor) if info.type == "t")
        counts = {}
        for name in names:
            cursor.execute(f"SELECT COUNT(*) FROM {connection.ops.quote_name(name)}")  # noqa: S608 (a table name)
            counts[name] = cursor.fetchone()[0]
    return counts


def concrete_models(app_labels: tuple[str, ...]) -> list[type[Model]]:
    """The models of these apps that own a table (proxies and unmanaged models read someone else's)."""
    found = []
    for app_label in app_labels:
        for model in apps.get_app_config(app_label).get_models():
            if not model._meta.proxy and model._meta.managed:
                found.append(model)
    return found


def model_rows(model: type[Model]) -> list[dict[str, Any]]:
    """Every row as Django serialises it (pk, fields, many-to-many pks sorted), through JSON once so that
    dates, decimals and JSON columns compare as text the same way on both sides."""
    data = serializers.serialize("python", model._default_manager.order_by("pk"))
    m2m = {field.name for field in model._meta.many_to_many}
    rows = []
    for item in data:
        fields = {name: sorted(value) if name in m2m else value for name, value in item["fields"].items()}
        rows.append({"pk": item["pk"], "fields": fields})
    return json.loads(json.dumps(rows, cls=DjangoJSONEncoder))


def content_types() -> dict[str, int]:
    """Content type id by 'app_label.model': what permissions, audit entries and generic keys point at."""
    ContentType = apps.get_model("contenttypes", "ContentType")
    return {f"{app}.{model}": pk for pk, app, model in ContentType.objects.values_list("pk", "app_label", "model")}


def permission_names(queryset: Any) -> list[str]:
    """Permissions as 'app_label.model:codename' (the model a permission is about, not only its app)."""
    values = queryset.values_list("content_type__app_label", "content_type__model", "codename")
    return sorted(f"{app}.{model}:{codename}" for app, model, codename in values)


def groups() -> dict[str, dict[str, list[str]]]:
    """Each group's members and permissions."""
    Group = apps.get_model("auth", "Group")
    return {
        group.name: {
            "members": sorted(group.user_set.values_list("username", flat=True)),
            "permissions": permission_names(group.permissions.all()),
        }
        for group in Group.objects.order_by("name")
    }


def user_permissions() -> dict[str, list[str]]:
    """Permissions granted to users directly (not through a group), for the users that have any."""
    User = apps.get_model("auth", "User")
    granted = {user.username: permission_names(user.user_permissions.all()) for user in User.objects.order_by("pk")}
    return {name: perms for name, perms in granted.items() if perms}


def audit_entries(model: type[Model]) -> list[dict[str, Any]]:
    """django-auditlog entries about rows of `model`: which object, which action, what changed."""
    LogEntry = apps.get_model("auditlog", "LogEntry")
    # By label, not get_for_model: that would make a content type that is missing, hiding the loss.
    about = {"content_type__app_label": model._meta.app_label, "content_type__model": model._meta.model_name}
    entries = LogEntry.objects.filter(**about).order_by("pk")
    values = entries.values("pk", "object_pk", "object_repr", "action", "changes")
    return json.loads(json.dumps(list(values), cls=DjangoJSONEncoder))


def schedules() -> list[dict[str, Any]]:
    """django-q schedules: their names and the dotted paths the cluster imports to run them."""
    Schedule = apps.get_model("django_q", "Schedule")
    return list(Schedule.objects.order_by("pk").values("pk", "name", "func", "hook"))
