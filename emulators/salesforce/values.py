"""Turning a JSON request body into field values, the way the REST API deserialises an sObject.

Problems found here fail the whole call (Salesforce cannot even build the sObject): an unknown field
or relationship answers 400 INVALID_FIELD, a value of the wrong JSON type answers 400 JSON_PARSER_ERROR.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from . import schema as s
from .errors import RequestError, SFError, json_parser_error

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass
class Reference:
    """``"Account__r": {"Lifecycle_Engine_ID__c": "acc_1"}`` — a lookup set by the parent's external id."""

    lookup: s.FieldDef
    target: s.ObjectDef
    ext_field: s.FieldDef
    value: Any


@dataclass
class Parsed:
    obj: s.ObjectDef
    values: dict[str, Any] = field(default_factory=dict)  # canonical field name -> coerced value
    refs: list[Reference] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)


def no_such_column(name: str, obj: s.ObjectDef) -> RequestError:
    return RequestError(
        400,
        SFError(
            "INVALID_FIELD",
            f"No such column '{name}' on sobject of type {obj.name}",
        ),
    )


def sf_now() -> str:
    now = dt.datetime.now(dt.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}+0000"


def coerce(fdef: s.FieldDef, value: Any) -> Any:
    """The stored form of a JSON value for a field, or a JSON_PARSER_ERROR."""
    if value is None:
        return None
    kind = fdef.type

    def bad() -> RequestError:
        return json_parser_error(
            f"Cannot deserialize instance of {kind} from {type(value).__name__} value {value!r} "
            f"or request may be missing a required field (field {fdef.name})"
        )

    if isinstance(value, dict | list):
        raise bad()
    if kind in s.TEXT_TYPES or kind in (s.REFERENCE, s.ID):
        if isinstance(value, bool):
            return "true" if value else "false"
        return value if isinstance(value, str) else str(value)
    if kind == s.BOOLEAN:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise bad()
    if kind in (s.DOUBLE, s.CURRENCY, s.INT):
        if isinstance(value, bool):
            raise bad()
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise bad() from None
        return int(number) if kind == s.INT else number
    if kind == s.DATE:
        if not isinstance(value, str) or len(value) != 10:
            raise bad()
        try:
            return dt.date.fromisoformat(value).isoformat()
        except ValueError:
            raise bad() from None
    if kind == s.DATETIME:
        if not isinstance(value, str):
            raise bad()
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise bad() from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        parsed = parsed.astimezone(dt.UTC)
        return parsed.strftime("%Y-%m-%dT%H:%M:%S.") + f"{parsed.microsecond // 1000:03d}+0000"
    return value


def parse_body(schema: s.Schema, obj: s.ObjectDef, body: Any, *, strict: bool = True) -> Parsed:
    """Check every key of a record body against the object's fields and relationships."""
    if not isinstance(body, dict):
        raise json_parser_error(f"Cannot deserialize instance of {obj.name} from {type(body).__name__}")
    parsed = Parsed(obj=obj, raw=body)
    for key, value in body.items():
        if key == "attributes":
            continue
        fdef = obj.get_field(key)
        if fdef is not None:
            parsed.values[fdef.name] = coerce(fdef, value)
            continue
        rel = obj.relationship(key)
        if rel is not None and isinstance(value, dict):
            parsed.refs.append(_reference(schema, obj, rel, key, value))
            continue
        if strict:
            raise no_such_column(key, obj)
    return parsed


def _reference(schema: s.Schema, obj: s.ObjectDef, rel: s.FieldDef, key: str, value: dict[str, Any]) -> Reference:
    keys = [k for k in value if k != "attributes"]
    if len(keys) != 1:
        raise RequestError(
            400,
            SFError("INVALID_FIELD", f"The relationship {key} must reference exactly one external ID field"),
        )
    target = schema.get(rel.reference_to or "")
    if rel.polymorphic:
        named = (value.get("attributes") or {}).get("type") if isinstance(value.get("attributes"), dict) else None
        if named not in rel.polymorphic:
            objects = ", ".join(rel.polymorphic)
            message = f"The polymorphic relationship {key} must name its object in attributes.type ({objects})"
            raise RequestError(400, SFError("INVALID_FIELD", message))
        target = schema.get(named)
    if target is None:  # pragma: no cover - schema misconfiguration
        raise no_such_column(key, obj)
    ext = target.get_field(keys[0])
    if ext is None or not ext.external_id:
        raise RequestError(
            400,
            SFError(
                "INVALID_FIELD",
                f"Field name provided, {keys[0]} is not an External ID or indexed field for {target.name}",
            ),
        )
    return Reference(lookup=rel, target=target, ext_field=ext, value=coerce(ext, value[keys[0]]))
