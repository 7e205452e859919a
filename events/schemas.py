"""Payload schemas of the provisioning webhook (CONTRACT §2), declared as DRF serializers and checked by lean
per-field checks derived from them (run_schema), with DRF's own fields deciding whatever those cannot vouch for.

`parse_provisioning_body` turns raw bytes into a typed `ParsedWebhook` or raises `PayloadInvalid`
with errors keyed the way the 422 body names them (`data.workspace_id`).
"""

from __future__ import annotations

import functools
import json
import math
import re
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import ProhibitNullCharactersValidator
from django.utils.dateparse import parse_datetime
from rest_framework import serializers
from rest_framework.fields import _UnvalidatedField
from rest_framework.validators import ProhibitSurrogateCharactersValidator


class PayloadInvalid(Exception):
    def __init__(self, fields: dict[str, list[str]], body: Any = None) -> None:
        super().__init__(fields)
        self.fields = fields
        self.body = body


#: Instants the engine applies (CONTRACT §2): a date outside these is refused at the door, not stored to
#: overflow date arithmetic later (a trial dated 9999 made every later fold of its workspace fail).
EARLIEST_INSTANT = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_INSTANT = datetime(2999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


def instant_in_range(value: datetime) -> bool:
    """Whether an aware instant lies in 1970–2999 (UTC), the span the engine can apply."""
    return EARLIEST_INSTANT <= value <= LATEST_INSTANT


class RFC3339Field(serializers.Field):
    """An instant with an explicit offset, in 1970–2999; naive times are refused rather than guessed."""

    default_error_messages = {
        "invalid": "Enter an RFC 3339 timestamp such as 2026-11-20T14:03:11Z.",
        "naive": "The timestamp needs a UTC offset (Z or +hh:mm).",
        "range": "Enter an instant from 1970-01-01T00:00:00Z to 2999-12-31T23:59:59Z.",
    }

    def to_internal_value(self, data: Any) -> datetime:
        if not isinstance(data, str):
            self.fail("invalid")
        try:
            value = parse_datetime(data.strip())
        except ValueError:
            value = None
        if value is None:
            self.fail("invalid")
        if value.tzinfo is None:
            self.fail("naive")
        # Compared before converting: 9999-12-31T23:59:59-14:00 has no UTC datetime (OverflowError).
        if not instant_in_range(value):
            self.fail("range")
        return value.astimezone(UTC)

    def to_representation(self, value: datetime) -> str:
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


#: Deepest nesting a body may have (CONTRACT §2): deeper ones are refused before parsing, so neither the
#: parser nor anything walking the body later can run out of stack (RecursionError).
MAX_JSON_DEPTH = 64
#: Largest integer a body may carry: what a signed 64-bit integer holds (Stripe's amounts, a database bigint).
#: Beyond it are numbers no field takes; at 4,300 digits Python refuses to convert them at all.
MAX_JSON_INT = 2**63 - 1
TOO_DEEP = f"Nested deeper than {MAX_JSON_DEPTH} levels."
INT_OUT_OF_RANGE = f"Integers must lie between -{MAX_JSON_INT} and {MAX_JSON_INT}."
NOT_FINITE = "NaN, Infinity and numbers beyond a double's range are not JSON numbers."

_STRUCTURE = re.compile(rb'[\[\]{}"]')
_STRING_REST = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


class _OutOfRange(str):
    """An integer too long to convert, as parsed: never leaves load_json (number_errors names it)."""


def _bounded_int(text: str) -> int | _OutOfRange:
    if len(text) > 20:  # 20 characters hold every 64-bit integer and its sign: refused unconverted
        return _OutOfRange(text)
    value = int(text)
    return value if abs(value) <= MAX_JSON_INT else _OutOfRange(text)


class _NumberHooks:
    """json.loads' number hooks for one body, noting whether any number is out of range: only then is the
    parsed body walked for their paths (number_errors), so a body without one costs no walk."""

    def __init__(self) -> None:
        self.seen_bad = False

    def integer(self, text: str) -> int | _OutOfRange:
        value = _bounded_int(text)
        self.seen_bad = self.seen_bad or isinstance(value, _OutOfRange)
        return value

    def real(self, text: str) -> float:
        value = float(text)  # 1e999 is inf
        self.seen_bad = self.seen_bad or not math.isfinite(value)
        return value

    def constant(self, name: str) -> float:  # NaN, Infinity, -Infinity
        self.seen_bad = True
        return float(name)


def json_nesting_exceeds(raw: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the JSON text nests arrays and objects deeper than `limit`, found without parsing it.

    Strings are skipped whole, so brackets inside them do not count. A body with no more brackets than
    `limit` needs no scan (nearly every body). Malformed text may be misjudged; the parser refuses it anyway.
    """
    return json_depth(raw, limit) > limit


def json_depth(raw: bytes, cap: int) -> int:
    """How deep the JSON text nests arrays and objects, counted up to cap + 1 (the scan stops there). Text with
    no more brackets than `cap` is not scanned: its bracket count is returned, a bound on its depth."""
    brackets = raw.count(b"[") + raw.count(b"{")
    if brackets <= cap:
        return brackets
    depth, deepest, position = 0, 0, 0
    while (found := _STRUCTURE.search(raw, position)) is not None:
        char = raw[found.start()]
        if char == ord('"'):
            rest = _STRING_REST.match(raw, found.end())
            if rest is None:
                return deepest  # an unterminated string: malformed
            position = rest.end()
            continue
        depth += 1 if char in b"[{" else -1
        if depth > deepest:
            deepest = depth
            if deepest > cap:
                return deepest
        position = found.end()
    return deepest


def number_errors(value: Any) -> dict[str, list[str]]:
    """The numbers in a parsed body that no field takes, by path (`data.count`, `data.items.0`): integers
    beyond 64 bits, NaN, ±Infinity (also what 1e999 parses to). Neither the fold nor the databases' JSON
    can hold them (SQLite's JSON_VALID refuses NaN: the row was refused with an IntegrityError)."""
    errors: dict[str, list[str]] = {}
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, dict):
            stack.extend((f"{path}.{key}" if path else str(key), child) for key, child in item.items())
        elif isinstance(item, list):
            stack.extend((f"{path}.{index}" if path else str(index), child) for index, child in enumerate(item))
        elif isinstance(item, _OutOfRange) or (
            isinstance(item, int) and not isinstance(item, bool) and abs(item) > MAX_JSON_INT
        ):
            errors[path or "body"] = [INT_OUT_OF_RANGE]
        elif isinstance(item, float) and not math.isfinite(item):
            errors[path or "body"] = [NOT_FINITE]
    return dict(sorted(errors.items()))


def load_json(raw: bytes) -> Any:
    """Parse a webhook body, refusing what the engine cannot hold: malformed JSON, nesting deeper than
    MAX_JSON_DEPTH, numbers beyond number_errors' limits. PayloadInvalid keeps the body as text then, which
    is always storable (the parsed body may not be)."""
    body, bad_numbers = _load_json(raw, MAX_JSON_DEPTH)
    if bad_numbers:
        raise PayloadInvalid(number_errors(body), body=raw.decode("utf-8", "replace"))
    return body


def _load_json(raw: bytes, depth: int | None) -> tuple[Any, bool]:
    """(parsed body, whether some number in it is out of range): PayloadInvalid for malformed JSON or nesting
    deeper than `depth` (None: the caller has checked). A caller that finds bad numbers asks number_errors
    where (load_json, batches)."""
    if depth is not None and json_nesting_exceeds(raw, depth):
        raise PayloadInvalid({"body": [TOO_DEEP]}, body=raw.decode("utf-8", "replace"))
    hooks = _NumberHooks()
    try:
        body = json.loads(raw, parse_int=hooks.integer, parse_float=hooks.real, parse_constant=hooks.constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadInvalid({"body": [f"Malformed JSON: {exc}"]}, body=raw.decode("utf-8", "replace")) from exc
    except RecursionError as exc:  # only if the scan misjudged an encoding other than UTF-8
        raise PayloadInvalid({"body": [TOO_DEEP]}, body=raw.decode("utf-8", "replace")) from exc
    return body, hooks.seen_bad


def nesting_exceeds(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether a parsed value nests arrays and objects deeper than `limit` (as json_nesting_exceeds counts)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth + 1 > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return False


def _text(max_length: int, *, required: bool = False) -> serializers.CharField:
    return serializers.CharField(
        max_length=max_length, required=required, allow_blank=not required, trim_whitespace=True
    )


class WorkspaceRefSerializer(serializers.Serializer):
    workspace_id = _text(64, required=True)


TIMEZONE_UNKNOWN = "Enter an IANA time zone name such as Europe/Berlin."


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


class TimeZoneField(serializers.CharField):
    """An IANA zone name the engine can load (`Europe/Berlin`); blank means UTC. Checked against the zone
    database's list, never by loading an arbitrary name (a path-like name must not reach the filesystem)."""

    default_error_messages = {"zone": TIMEZONE_UNKNOWN}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_length=64, required=False, allow_blank=True, trim_whitespace=True, **kwargs)

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        if value and value not in _zone_names() and value != "UTC":
            self.fail("zone")
        return value


class TrialStartedSerializer(WorkspaceRefSerializer):
    email = serializers.EmailField(max_length=254)
    workspace_name = _text(255)
    first_name = _text(100)
    last_name = _text(100)
    company = _text(255)
    plan = _text(64)
    trial_expires_at = RFC3339Field(required=False)
    acquisition_channel = _text(64)
    campaign = _text(128)
    timezone = TimeZoneField()


class SubscriptionConvertedSerializer(WorkspaceRefSerializer):
    email = serializers.EmailField(max_length=254, required=False, allow_blank=True)
    plan = _text(64, required=True)
    mrr = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=0, coerce_to_string=True)
    currency = serializers.RegexField(r"^[A-Za-z]{3}$", required=False, default="USD")
    subscription_id = _text(255)
    billing_interval = serializers.ChoiceField(
        choices=["day", "week", "month", "year"], required=False, allow_blank=True
    )


class WorkspaceChurnedSerializer(WorkspaceRefSerializer):
    email = serializers.EmailField(max_length=254, required=False, allow_blank=True)
    churned_at = RFC3339Field(required=False)
    reason = _text(255)


class UsageRecordedSerializer(WorkspaceRefSerializer):
    feature = _text(100, required=True)
    user_email = serializers.EmailField(max_length=254, required=False, allow_blank=True)
    count = serializers.IntegerField(min_value=0, max_value=10**9, required=False, default=1)
    duration_seconds = serializers.FloatField(min_value=0, required=False)
    product = _text(64)
    outcome = serializers.ChoiceField(choices=["success", "error"], required=False)


class TicketOpenedSerializer(WorkspaceRefSerializer):
    ticket_id = _text(128, required=True)
    priority = serializers.ChoiceField(choices=["low", "normal", "high", "urgent"], required=False)
    user_email = serializers.EmailField(max_length=254, required=False, allow_blank=True)
    subject = _text(255)


class TicketResolvedSerializer(WorkspaceRefSerializer):
    ticket_id = _text(128, required=True)
    satisfaction = serializers.IntegerField(min_value=1, max_value=5, required=False)


class PlanLimitReachedSerializer(WorkspaceRefSerializer):
    limit = _text(64, required=True)
    used = serializers.IntegerField(min_value=0, max_value=MAX_JSON_INT, required=False)
    allowed = serializers.IntegerField(min_value=0, max_value=MAX_JSON_INT, required=False)


class PaymentFailedSerializer(WorkspaceRefSerializer):
    """`billing.payment_failed`, from Stripe's invoice.payment_failed: marks the workspace at risk."""

    email = serializers.EmailField(max_length=254, required=False, allow_blank=True)
    subscription_id = _text(255)
    invoice_id = _text(255)
    amount_due = serializers.DecimalField(
        max_digits=12, decimal_places=2, min_value=0, coerce_to_string=True, required=False, allow_null=True
    )
    currency = serializers.RegexField(r"^[A-Za-z]{3}$", required=False, default="USD")
    attempt_count = serializers.IntegerField(min_value=0, required=False)
    next_payment_attempt = RFC3339Field(required=False, allow_null=True)
    billing_reason = _text(64)


class TrialWillEndSerializer(WorkspaceRefSerializer):
    """`billing.trial_will_end`, from Stripe's customer.subscription.trial_will_end (an alert input)."""

    email = serializers.EmailField(max_length=254, required=False, allow_blank=True)
    subscription_id = _text(255)
    trial_end = RFC3339Field(required=False, allow_null=True)


class RenewalUpdatedSerializer(WorkspaceRefSerializer):
    """`billing.renewal_updated`: the Stripe subscription's next renewal (webhook or reconciliation)."""

    subscription_id = _text(255)
    renews_at = RFC3339Field(required=False, allow_null=True)


class EnvelopeSerializer(serializers.Serializer):
    type = serializers.CharField(max_length=64)
    timestamp = RFC3339Field()
    data = serializers.DictField()


@dataclass(frozen=True)
class ParsedWebhook:
    type: str
    occurred_at: datetime
    workspace_key: str
    known: bool
    body: dict[str, Any]
    data: dict[str, Any]


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


def _data_errors(event_type: str, data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    validated, errors = run_schema(STORED_DATA_SCHEMAS[event_type], data, "data")
    return ({}, errors) if errors else (validated, {})


def validate_data(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    """Validated `data` of a known type (also used by the processor to read stored payloads)."""
    validated, errors = _data_errors(event_type, data)
    if errors:
        raise PayloadInvalid(errors)
    return validated


def parse_provisioning_body(raw: bytes) -> ParsedWebhook:
    """Parse and validate a body; every wrong field is reported at once, envelope and data alike."""
    return parse_provisioning_event(load_json(raw))


def parse_provisioning_event(body: Any) -> ParsedWebhook:
    """Validate one parsed event (a body, or one event of a batch): its type, timestamp and data."""
    if not isinstance(body, dict):
        raise PayloadInvalid({"body": ["Expected a JSON object with type, timestamp and data."]}, body=body)
    envelope, errors = run_schema(EnvelopeSerializer, body)
    event_type, raw_data = body.get("type"), body.get("data")
    known = isinstance(event_type, str) and event_type in DATA_SCHEMAS
    data: dict[str, Any] = raw_data if isinstance(raw_data, dict) else {}
    if known and isinstance(raw_data, dict):
        data, data_errors = _data_errors(event_type, raw_data)
        errors.update(data_errors)
    if errors:
        raise PayloadInvalid(errors, body=body)
    candidate = data.get("workspace_id")
    return ParsedWebhook(
        type=event_type,
        occurred_at=envelope["timestamp"],
        workspace_key=candidate[:64] if isinstance(candidate, str) else "",
        known=known,
        body=body,
        data=data,
    )


class MarketoLeadSerializer(serializers.Serializer):
    """CONTRACT §5: a lead created in Marketo."""

    lead_id = serializers.CharField(max_length=64)
    email = serializers.EmailField(max_length=254)
    first_name = _text(100)
    last_name = _text(100)
    company = _text(255)
    created_at = RFC3339Field(required=False)


def parse_marketo_body(raw: bytes) -> dict[str, Any]:
    body = load_json(raw)
    if not isinstance(body, dict):
        raise PayloadInvalid({"body": ["Expected a JSON object."]}, body=body)
    lead, errors = run_schema(MarketoLeadSerializer, body)
    if errors:
        raise PayloadInvalid(errors, body=body)
    return {"body": body, **lead}


#: Most events one batch may carry (CONTRACT §2b).
MAX_BATCH_EVENTS = 1000
#: A batch nests its events two levels down ({"events": [event, …]}); each may nest MAX_JSON_DEPTH. A body is
#: parsed up to this depth, so an event nested too deep is rejected on its own (the parser and the walks
#: below are safe far deeper); a body deeper still is refused whole.
_BATCH_DEPTH = 4 * MAX_JSON_DEPTH


@dataclass(frozen=True)
class BatchItem:
    """One event of a batch: its id and either the parsed event or why it is rejected."""

    index: int
    id: str
    parsed: ParsedWebhook | None = None
    error: PayloadInvalid | None = None


def _event_id_errors(index: int, event: Any) -> list[str]:
    if not isinstance(event, dict):
        return ["Expected a JSON object with id, type, timestamp and data."]
    event_id = event.get("id")
    if event_id is None:
        return ["This field is required."]
    if type(event_id) is not str or not event_id.strip():  # _OutOfRange is a str: a number is not an id
        return ["Enter the event's id as a non-empty string."]
    if len(event_id) > 255:
        return ["At most 255 characters."]
    return []


def parse_batch_body(raw: bytes) -> list[BatchItem]:
    """Parse a batch (CONTRACT §2b): each event validated as §2 validates a body, its problems its own.

    A malformed envelope (not JSON, no `events` list, more than MAX_BATCH_EVENTS, an event without a usable
    id, a bad number outside the events) raises PayloadInvalid: the whole batch is refused.
    """
    depth = json_depth(raw, _BATCH_DEPTH)  # one scan: the whole body's limit, and whether an event can be too deep
    if depth > _BATCH_DEPTH:
        raise PayloadInvalid({"body": [TOO_DEEP]}, body=raw.decode("utf-8", "replace"))
    body, bad_numbers = _load_json(raw, None)
    events = body.get("events") if isinstance(body, dict) else None
    if not isinstance(events, list):
        raise PayloadInvalid({"events": ["Expected a list of events."]}, body=_storable(body, bad_numbers))
    if len(events) > MAX_BATCH_EVENTS:
        message = f"At most {MAX_BATCH_EVENTS:,} events per batch; this one has {len(events):,}."
        raise PayloadInvalid({"events": [message]}, body=_storable(body, bad_numbers))
    errors = {f"events.{i}.id": found for i, event in enumerate(events) if (found := _event_id_errors(i, event))}
    if bad_numbers:
        errors.update(number_errors({key: value for key, value in body.items() if key != "events"}))
    if errors:
        raise PayloadInvalid(errors, body=_storable(body, bad_numbers))
    deep = depth > MAX_JSON_DEPTH + 2  # only then can an event be too deep
    items = []
    for index, event in enumerate(events):
        try:
            if deep and nesting_exceeds(event):
                raise PayloadInvalid({"body": [TOO_DEEP]})
            if bad_numbers and (found := number_errors(event)):
                raise PayloadInvalid(found)
            items.append(BatchItem(index, event["id"], parsed=parse_provisioning_event(event)))
        except PayloadInvalid as exc:
            stored = PayloadInvalid(exc.fields, body=_storable(event, bool(deep or bad_numbers)))
            items.append(BatchItem(index, event["id"], error=stored))
    return items


def _storable(value: Any, unholdable: bool) -> Any:
    """A parsed value as a rejected event keeps it: as text when it may hold what no JSON column can
    (numbers out of range, NaN, nesting too deep), else as it is."""
    return json.dumps(value) if unholdable else value


class Handling(StrEnum):
    """What the engine does with a stored event of a type, once (events/services.py enqueue_work routes by it)."""

    FOLDED = "folded"  # its workspace is re-folded (workspaces/lifecycle.py FOLDS, processing/pipeline.py)
    ROLLED_UP = "rolled_up"  # added to the behaviour rollups in batches (usage/rollups.py)
    MARKETO = "marketo"  # links a lead (linking/marketo.py)
    IGNORED = "ignored"  # stored, never applied


@dataclass(frozen=True)
class EventType:
    """One stored event type: how its `data` validates, what handles it, and whether the provisioning
    webhook takes it (CONTRACT §2; the others come from Stripe or Marketo)."""

    name: str
    schema: type[serializers.Serializer]
    handling: Handling
    webhook: bool = True


#: Every event type the engine stores and applies, declared once. A type the webhook accepts must be
#: folded or rolled up (tests/events/test_event_types.py): one without a handler would stay `new` forever.
EVENT_TYPES: dict[str, EventType] = {
    event_type.name: event_type
    for event_type in (
        EventType("trial.started", TrialStartedSerializer, Handling.FOLDED),
        EventType("subscription.converted", SubscriptionConvertedSerializer, Handling.FOLDED),
        EventType("workspace.churned", WorkspaceChurnedSerializer, Handling.FOLDED),
        EventType("usage.recorded", UsageRecordedSerializer, Handling.ROLLED_UP),
        EventType("support.ticket_opened", TicketOpenedSerializer, Handling.ROLLED_UP),
        EventType("support.ticket_resolved", TicketResolvedSerializer, Handling.ROLLED_UP),
        EventType("plan.limit_reached", PlanLimitReachedSerializer, Handling.ROLLED_UP),
        # From Stripe only: the processor reads them, the provisioning webhook does not accept them.
        EventType("billing.payment_failed", PaymentFailedSerializer, Handling.FOLDED, webhook=False),
        EventType("billing.trial_will_end", TrialWillEndSerializer, Handling.FOLDED, webhook=False),
        EventType("billing.renewal_updated", RenewalUpdatedSerializer, Handling.FOLDED, webhook=False),
        # From Marketo: its schema is the whole body (CONTRACT §5), not a `data` object.
        EventType("marketo.lead_created", MarketoLeadSerializer, Handling.MARKETO, webhook=False),
    )
}


def types_handled(handling: Handling) -> tuple[str, ...]:
    """The registered types with this handling, in declaration order."""
    return tuple(name for name, event_type in EVENT_TYPES.items() if event_type.handling == handling)


#: The provisioning webhook's types (CONTRACT §2) and their `data` schemas.
DATA_SCHEMAS = {name: t.schema for name, t in EVENT_TYPES.items() if t.webhook}
#: Every type whose stored payload has a `data` object to re-validate.
STORED_DATA_SCHEMAS = {name: t.schema for name, t in EVENT_TYPES.items() if t.handling != Handling.MARKETO}
ROLLED_UP_TYPES = types_handled(Handling.ROLLED_UP)
MARKETO_TYPE = "marketo.lead_created"
