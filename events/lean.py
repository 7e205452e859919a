"""Validating a payload against its DRF serializer cheaply (run_schema): each field checked by a lean check
built from the serializer's own field (lengths, choices, types), anything a lean check cannot vouch for
handed to the DRF field itself, so the validated data and every error message stay DRF's; a hypothesis test
compares both paths (tests/events/test_lean_validation.py)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import ProhibitNullCharactersValidator
from rest_framework import serializers
from rest_framework.fields import _UnvalidatedField
from rest_framework.validators import ProhibitSurrogateCharactersValidator

from events.fields import RFC3339Field, TimeZoneField, _zone_names


def _flatten(errors: Any, prefix: str = "") -> dict[str, list[str]]:
    if isinstance(errors, dict):
        flat: dict[str, list[str]] = {}
        for key, value in errors.items():
            flat.update(_flatten(value, f"{prefix}{key}" if not prefix else f"{prefix}.{key}"))
        return flat
    return {prefix or "body": [str(message) for message in errors]}


_bound_fields: dict[type[serializers.Serializer], dict[str, serializers.Field]] = {}


def _fields_of(schema: type[serializers.Serializer]) -> dict[str, serializers.Field]:
    """The schema's fields, built and bound once.

    A DRF serializer deep-copies its declared fields on every instantiation, which cost more than
    the rest of a webhook request together (measured: ~1 ms of ~2.5). Field validation keeps no
    state, so one bound copy serves every request and thread.
    """
    fields = _bound_fields.get(schema)
    if fields is None:
        fields = _bound_fields[schema] = dict(schema().fields)
    return fields


#: A lean check's answer when it cannot vouch for a value: DRF's own field then decides (and words the error).
_ASK_DRF = object()


@dataclass(frozen=True)
class _FieldPlan:
    """How run_schema validates one field: `check` takes a present, non-null value and returns what DRF would
    return for it, or _ASK_DRF; a missing value is skipped or defaulted as DRF would, else DRF decides."""

    name: str
    field: serializers.Field
    check: Any  # Callable[[Any], Any] | None
    missing: Any  # the value a missing field takes, _SKIP to leave it out, or _ASK_DRF


_SKIP = object()
_NOT_HOLDABLE_CHARS = re.compile("[\x00\ud800-\udfff]")  # DRF's ProhibitNull/ProhibitSurrogate validators
_CHAR_FIELDS = (serializers.CharField, serializers.EmailField, serializers.RegexField)
_CHARACTER_VALIDATORS = (ProhibitNullCharactersValidator, ProhibitSurrogateCharactersValidator)
_plans: dict[type[serializers.Serializer], tuple[_FieldPlan, ...]] = {}


def _plans_of(schema: type[serializers.Serializer]) -> tuple[_FieldPlan, ...]:
    plans = _plans.get(schema)
    if plans is None:
        plans = _plans[schema] = tuple(_plan(name, field) for name, field in _fields_of(schema).items())
    return plans


def _plan(name: str, field: serializers.Field) -> _FieldPlan:
    if field.required:
        missing = _ASK_DRF  # DRF words "This field is required."
    elif field.default is serializers.empty:
        missing = _SKIP
    else:
        missing = _ASK_DRF if callable(field.default) else field.default
    plain = field.source == name and not (field.read_only or field.write_only)
    return _FieldPlan(name, field, _lean_check(field) if plain else None, missing)


def _lean_check(field: serializers.Field) -> Any:
    """A check doing what `field.run_validation` does for the values senders send, without DRF's per-call
    machinery (validate_empty_values, run_validators' context probing, choice and dict re-building): about a
    quarter of its cost. None for a field it does not know: DRF validates that field alone. Anything else
    (a wrong type, a bound crossed, a validator's refusal) goes to DRF, which raises its usual message."""
    validators = tuple(field.validators)
    if any(getattr(validator, "requires_context", False) for validator in validators):
        return None
    kind = type(field)
    if kind in _CHAR_FIELDS or kind is TimeZoneField:
        to_internal = _char_check(field, zones=kind is TimeZoneField)
        # One regex search in _char_check does what these two do character by character in Python.
        validators = tuple(v for v in validators if not isinstance(v, _CHARACTER_VALIDATORS))
    elif kind is serializers.IntegerField:
        to_internal = _int_value
    elif kind is serializers.FloatField:
        to_internal = _float_value
    elif kind is serializers.ChoiceField:
        to_internal = _choice_check(field)
    elif kind is serializers.DictField and type(field.child) is _UnvalidatedField:
        to_internal = _dict_check(field)
    elif kind in (serializers.DecimalField, RFC3339Field):
        to_internal = field.to_internal_value
    else:
        return None

    def check(value: Any) -> Any:
        try:
            internal = to_internal(value)
            if internal is _BLANK:
                return ""
            if internal is _ASK_DRF:
                return _ASK_DRF
            for validator in validators:
                validator(internal)
        except (serializers.ValidationError, DjangoValidationError):
            return _ASK_DRF
        return internal

    return check


#: A blank text a field allows: DRF returns "" without running the validators (CharField.run_validation).
_BLANK = object()


def _char_check(field: serializers.CharField, *, zones: bool) -> Any:
    trim, allow_blank = field.trim_whitespace, field.allow_blank

    def to_internal(value: Any) -> Any:
        if type(value) is not str:  # numbers become text in DRF, a str subclass may be _OutOfRange: DRF decides
            return _ASK_DRF
        text = value.strip() if trim else value
        if not text:
            return _BLANK if allow_blank else _ASK_DRF
        if zones and text not in _zone_names() and text != "UTC":
            return _ASK_DRF
        return _ASK_DRF if _NOT_HOLDABLE_CHARS.search(text) else text

    return to_internal


def _int_value(value: Any) -> Any:
    return value if type(value) is int else _ASK_DRF  # bool and _OutOfRange are not int


def _float_value(value: Any) -> Any:
    if type(value) is float:
        return value if math.isfinite(value) else _ASK_DRF
    return float(value) if type(value) is int else _ASK_DRF


def _choice_check(field: serializers.ChoiceField) -> Any:
    choices, allow_blank = field.choice_strings_to_values, field.allow_blank

    def to_internal(value: Any) -> Any:
        if type(value) is not str:
            return _ASK_DRF
        if value == "" and allow_blank:
            return _BLANK
        return choices.get(value, _ASK_DRF)

    return to_internal


def _dict_check(field: serializers.DictField) -> Any:
    allow_empty = field.allow_empty

    def to_internal(value: Any) -> Any:
        if type(value) is not dict or (not value and not allow_empty):
            return _ASK_DRF
        return {str(key): item for key, item in value.items()}

    return to_internal


def run_schema(schema: type[serializers.Serializer], data: dict[str, Any], prefix: str = "") -> tuple[dict, dict]:
    """Validate `data` like `schema(data=data).is_valid()` would: (validated data, errors by field).

    Each field goes through its lean check (_lean_check) and only what that cannot vouch for through the DRF
    field itself, so the answer and every error message are DRF's own (tests/events/test_lean_validation.py
    compares the two on generated payloads). DRF field validation was the largest part of the webhook's own
    work (issue 22).
    """
    validated: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    for plan in _plans_of(schema):
        value = data.get(plan.name, serializers.empty)
        if value is serializers.empty:
            if plan.missing is _SKIP:
                continue
            if plan.missing is not _ASK_DRF:
                validated[plan.field.source] = plan.missing
                continue
        elif value is not None and plan.check is not None:
            result = plan.check(value)
            if result is not _ASK_DRF:
                validated[plan.name] = result
                continue
        field = plan.field
        try:
            result = field.run_validation(value)
        except serializers.SkipField:
            continue
        except serializers.ValidationError as exc:
            errors.update(_flatten({plan.name: exc.detail}, prefix))
            continue
        validated[field.source] = result
    return validated, errors


def run_schema_drf(schema: type[serializers.Serializer], data: dict[str, Any], prefix: str = "") -> tuple[dict, dict]:
    """run_schema through DRF's fields alone: the reference the lean checks are tested against."""
    validated: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    for name, field in _fields_of(schema).items():
        try:
            value = field.run_validation(field.get_value(data))
        except serializers.SkipField:
            continue
        except serializers.ValidationError as exc:
            errors.update(_flatten({name: exc.detail}, prefix))
            continue
        validated[field.source] = value
    return validated, errors
