"""Audit entries of one transaction written together.

django-auditlog writes each entry as it happens: an INSERT per save and, before every update, a SELECT
of the row as it was. Processing saves three or four audited records per event, so that was a third
of its statements. Inside `audit_entries_together()` the same entries (same diff, object repr, actor
and correlation id, made by auditlog's own functions) are collected and inserted in one statement when
the block ends, inside its transaction: a rolled-back block leaves none, a committed one all of them.

The row as it was comes from what the instance was loaded with (`AuditSnapshot.from_db`) or last saved
as, kept on the instance; when that is missing (a record built by hand, a field deferred) it is read as
auditlog reads it. Batched entries send no pre_log/post_log signals (nothing here listens to them).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from auditlog import get_logentry_model
from auditlog.context import auditlog_disabled, disable_auditlog
from auditlog.diff import get_field_value, get_fields_in_model, get_mask_function, is_primitive, model_instance_diff
from auditlog.models import _get_manager_from_settings
from auditlog.registry import auditlog
from django.conf import settings
from django.db import connections, models, router
from django.db.models.fields.related_descriptors import ReverseManyToOneDescriptor
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save
from django.dispatch import receiver
from django.utils.encoding import smart_str

_entries: ContextVar[list[Any] | None] = ContextVar("audit_entries_together", default=None)
_SNAPSHOT = "_audit_snapshot"


class AuditSnapshot:
    """Model mixin: remember the values a row was loaded with, so its next audited update needs no
    SELECT of the old row (the pattern of Django's "customizing model loading")."""

    @classmethod
    def from_db(cls, db, field_names, values):
        instance = super().from_db(db, field_names, values)
        setattr(instance, _SNAPSHOT, _frozen(dict(zip(field_names, values, strict=True))))
        return instance

    def refresh_from_db(self, *args: Any, **kwargs: Any) -> None:
        self.__dict__.pop(_SNAPSHOT, None)  # its values change behind the snapshot: read the old row instead
        super().refresh_from_db(*args, **kwargs)


def _frozen(values: dict[str, Any]) -> dict[str, Any]:
    """A copy that a later in-place change of a list or dict field cannot reach."""
    return {name: copy.deepcopy(v) if isinstance(v, list | dict) else v for name, v in values.items()}


@contextmanager
def audit_entries_together() -> Iterator[None]:
    """Collect the block's audit entries and insert them in one statement at its end (re-entrant).

    Use inside a transaction: the entries are written before it commits, in the order they happened.
    """
    if _entries.get() is not None or auditlog_disabled.get():
        yield
        return
    collected: list[Any] = []
    token = _entries.set(collected)
    try:
        with disable_auditlog():
            yield
        _flush(collected)
    finally:
        _entries.reset(token)


def _flush(entries: list[Any]) -> None:
    """Insert the entries: with COPY on PostgreSQL (bulk_create's UNNEST form escapes every quote of every
    JSON diff in Python, a third of the audit trail's cost), with bulk_create elsewhere."""
    if not entries:
        return
    log_entry = get_logentry_model()
    connection = connections[router.db_for_write(log_entry)]
    if connection.vendor != "postgresql":
        log_entry.objects.bulk_create(entries)
        return
    fields = [f for f in log_entry._meta.concrete_fields if not (f.primary_key and f.db_returning)]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    rows = [[f.get_db_prep_save(f.pre_save(entry, True), connection) for f in fields] for entry in entries]
    _copy(connection, f"COPY {connection.ops.quote_name(log_entry._meta.db_table)} ({columns}) FROM STDIN", rows)


def _copy(connection: Any, sql: str, rows: list[list[Any]]) -> None:
    """Run COPY … FROM STDIN as Django runs a statement: through its execute wrappers (query counts,
    metrics), its SQL log and its error translation, so it is as visible as the INSERT it replaces."""

    def copy_rows(sql: str, rows: list[list[Any]], many: bool, context: dict[str, Any]) -> None:
        connection.validate_no_broken_transaction()
        with connection.wrap_database_errors, context["cursor"].cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row(row)

    with connection.cursor() as cursor:
        logged = cursor.debug_sql(sql, None) if hasattr(cursor, "debug_sql") else contextlib.nullcontext()
        with logged:
            cursor._execute_with_wrappers(sql, rows, False, copy_rows)


def _add(entries: list[Any], entry: Any) -> None:
    """Keep an entry, given now what a save would give it: auditlog's set_actor context fills the actor
    (and any extra data) from a pre_save receiver it connects on LogEntry for as long as it is active."""
    if entry is None:
        return
    pre_save.send(sender=type(entry), instance=entry, raw=False, using=entry._state.db, update_fields=None)
    entries.append(entry)


@functools.cache
def _unsaved() -> Any:
    """auditlog's LogEntryManager whose create() returns the entry unsaved: its log_create and
    log_m2m_changes fill every field exactly as they do for an entry written at once."""
    log_entry = get_logentry_model()

    class UnsavedEntries(type(log_entry.objects)):
        def create(self, **kwargs: Any) -> Any:
            return self.model(**kwargs)

    manager = UnsavedEntries()
    manager.model = log_entry
    return manager


def _collecting(sender: type[models.Model]) -> list[Any] | None:
    entries = _entries.get()
    return entries if entries is not None and auditlog.contains(sender) else None


def _remember(instance: models.Model, names: Any = None) -> None:
    snapshot = getattr(instance, _SNAPSHOT, None) if names is not None else None
    fields = instance._meta.concrete_fields
    current = {f.attname: getattr(instance, f.attname) for f in fields if f.attname in instance.__dict__}
    if snapshot is not None:
        wanted = {f.attname for f in fields if f.name in names or f.attname in names}
        current = {**snapshot, **{name: value for name, value in current.items() if name in wanted}}
    setattr(instance, _SNAPSHOT, _frozen(current))


def _old_row(sender: type[models.Model], instance: models.Model, fields: Any) -> models.Model | None:
    """The row as it is in the database, from the instance's snapshot when it covers the fields."""
    snapshot = getattr(instance, _SNAPSHOT, None)
    if snapshot is not None:
        needed = [f for f in sender._meta.concrete_fields if fields is None or f.name in fields or f.attname in fields]
        if all(f.attname in snapshot for f in needed):
            old = sender(**snapshot)
            old._state.adding, old._state.db = False, instance._state.db
            return old
    return _get_manager_from_settings(sender).filter(pk=instance.pk).first()


def _log(entries: list[Any], action: int, instance: models.Model, old: Any, new: Any, fields: Any = None) -> None:
    as_json = settings.AUDITLOG_STORE_JSON_CHANGES
    if (old is None or new is None) and not fields:
        changes = _one_sided_diff(instance, created=old is None, as_json=as_json)
    else:
        changes = model_instance_diff(old, new, fields_to_check=fields, use_json_for_changes=as_json)
    if changes:
        _add(entries, _unsaved().log_create(instance, action=action, changes=changes))


def _one_sided_diff(instance: models.Model, *, created: bool, as_json: bool) -> dict[str, Any] | None:
    """auditlog's `model_instance_diff(None, instance)` (a create) or `(instance, None)` (a delete), the
    same dict in the same order, without its per-entry waste: most of a create's cost was reading the
    missing side (two caught exceptions a field, always the same answer) and building a related
    manager for each reverse relation only to print its class. Both are constants, kept per field."""
    model = instance._meta.model
    model_fields = auditlog.get_model_fields(model)
    fields: Any = _tracked_fields(instance)
    if model_fields and (model_fields["include_fields"] or model_fields["exclude_fields"]):
        if model_fields["include_fields"]:
            fields = [f for f in fields if f.name in model_fields["include_fields"]]
        if model_fields["exclude_fields"]:
            fields = [f for f in fields if f.name not in model_fields["exclude_fields"]]
    diff = {}
    for field in fields:
        missing = _missing_side(model, field, as_json)
        value = missing if created and _nothing_refers_yet(instance, field) else _field_value(instance, field, as_json)
        old, new = (missing, value) if created else (value, missing)
        if old == new:
            continue
        if model_fields and field.name in model_fields["mask_fields"]:
            mask = get_mask_function(model_fields.get("mask_callable"))
            diff[field.name] = (mask(smart_str(old)), mask(smart_str(new)))
        elif not as_json:
            diff[field.name] = (smart_str(old), smart_str(new))
        else:
            diff[field.name] = tuple(side if is_primitive(side) else smart_str(side) for side in (old, new))
    return diff or None


_fields: dict[type[models.Model], set[Any]] = {}


def _tracked_fields(instance: models.Model) -> set[Any]:
    """The fields auditlog diffs (its own `get_fields_in_model`), as the same set, kept per model."""
    model = type(instance)
    if model not in _fields:
        _fields[model] = set(get_fields_in_model(instance))
    return _fields[model]


_constants: dict[tuple[type[models.Model], str, bool, str], Any] = {}


def _missing_side(model: type[models.Model], field: Any, as_json: bool) -> Any:
    """What auditlog reads for a field of the absent instance: the same for every entry."""
    key = (model, field.name, as_json, "missing")
    if key not in _constants:
        _constants[key] = get_field_value(None, field, as_json)
    return _constants[key]


def _nothing_refers_yet(instance: models.Model, field: Any) -> bool:
    """A row inserted a moment ago is no other row's one-to-one target yet: auditlog would run a query to
    find that out (and log the field's default, as for the absent side), one SELECT per created row."""
    return field.one_to_one and not field.concrete and not field.is_cached(instance)


def _field_value(instance: models.Model, field: Any, as_json: bool) -> Any:
    """auditlog's value of one field; a reverse relation's is a constant unless the instance holds
    something under its name (its related manager prints only the related model's label; with no
    attribute of that name auditlog takes the field's default)."""
    if field.concrete or field.name in instance.__dict__:
        return get_field_value(instance, field, as_json)
    model = type(instance)
    key = (model, field.name, as_json, "reverse")
    if key in _constants:
        return _constants[key]
    value = get_field_value(instance, field, as_json)
    descriptor = inspect.getattr_static(model, field.name, None)
    if descriptor is None or isinstance(descriptor, ReverseManyToOneDescriptor):
        _constants[key] = value
    return value


@receiver(pre_save, dispatch_uid="audit_entries_together_update")
def _on_update(sender, instance, raw=False, update_fields=None, **kwargs):
    entries = _collecting(sender)
    if entries is None or instance._state.adding or instance.pk is None:
        return
    if raw and settings.AUDITLOG_DISABLE_ON_RAW_SAVE:
        return
    old = _old_row(sender, instance, update_fields)
    _log(entries, get_logentry_model().Action.UPDATE, instance, old, instance, update_fields)


@receiver(post_save, dispatch_uid="audit_entries_together_saved")
def _on_saved(sender, instance, created, raw=False, update_fields=None, **kwargs):
    if isinstance(instance, AuditSnapshot):
        _remember(instance, None if created else update_fields)
    entries = _collecting(sender)
    if entries is None or not created or (raw and settings.AUDITLOG_DISABLE_ON_RAW_SAVE):
        return
    _log(entries, get_logentry_model().Action.CREATE, instance, None, instance)


@receiver(post_delete, dispatch_uid="audit_entries_together_delete")
def _on_delete(sender, instance, **kwargs):
    entries = _collecting(sender)
    if entries is not None and instance.pk is not None:
        _log(entries, get_logentry_model().Action.DELETE, instance, instance, None)


@receiver(m2m_changed, dispatch_uid="audit_entries_together_m2m")
def _on_m2m(sender, instance, action, model, pk_set, **kwargs):
    entries = _entries.get()
    if entries is None or action not in ("post_add", "post_clear", "post_remove"):
        return
    field_name = _m2m_field(sender, type(instance))
    if field_name is None:
        return
    manager = _get_manager_from_settings(model)
    changed = manager.all() if action == "post_clear" else manager.filter(pk__in=pk_set)
    _add(
        entries, _unsaved().log_m2m_changes(changed, instance, "add" if action == "post_add" else "delete", field_name)
    )


def _m2m_field(through: type[models.Model], model: type[models.Model]) -> str | None:
    """The audited many-to-many field of `model` whose through table is `through` (auditlog's m2m_fields)."""
    if not auditlog.contains(model):
        return None
    for name in auditlog._registry[model]["m2m_fields"]:
        if getattr(model, name).through is through:
            return name
    return None
