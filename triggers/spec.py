"""What a trigger says, validated: its `when`, event filters, actions and follow-up, each problem by its path.

An event filter is `{"type": "usage.recorded", "where": [{"path": "feature", "op": "==", "value": "export"}]}`:
the type, and conditions on the event's `data` (a dotted path). `when` is one of:
- `{"kind": "event", "event": filter}`: each matching event;
- `{"kind": "count", "event": filter, "count": N, "within_seconds": W}`: N matching events within W seconds,
  counted from the events themselves (to the second), anew after each firing;
- `{"kind": "stall", "start": filter, "finish": filter, "within_seconds": T, "key": "flow_id"?}`: a start
  with no finish (with the same `data.key`, when given) within T;
- `{"kind": "silence", "event": filter?, "for_seconds": T}`: no matching event (default: any usage) for T;
- `{"kind": "cohort", "cohort": key, "change": "entered" | "exited"}`;
- `{"kind": "stage", "from": key | null, "to": key | null}` (null: any stage);
- `{"kind": "date", "field": "trial_expires_at" | "renews_at", "days_before": N}`.

Actions are `[{"channel": a kind in messaging's registry, "template": key, "params": {…}, "marketing": bool?}, …]`
(an email marked marketing carries an unsubscribe link and is not sent to an address that unsubscribed). A follow-up
is `{"goal": {"event": filter} | {"condition": a metric condition tree (usage.conditions)},
"within_seconds": T, "escalate": [actions]?, "escalate_to": audience?, "activity": filter?}`: when the
goal is missed and the activity (default: any usage) since the firing is zero, the escalation fires.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from usage.conditions import condition_errors

WHERE_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "in": lambda value, allowed: value in allowed,
    "not_in": lambda value, allowed: value not in allowed,
    "exists": lambda value, wanted: (value is not None) == wanted,
}
ORDERED_OPS = (">=", ">", "<=", "<")
#: The built-in kinds of `when`; a higher app may add one (`when_check_register`).
KINDS = ("event", "count", "stall", "silence", "cohort", "stage", "date")
DATE_FIELDS = ("trial_expires_at", "renews_at")
#: What "activity" means when a silence or a follow-up names no filter: any usage of the product.
ACTIVITY = {"type": "usage.recorded"}
MAX_SECONDS = 366 * 86400
AUDIENCES = ("user", "owner_rep", "csm", "team")
REENTRY = ("every_time", "once")

Errors = dict[str, list[str]]


def _add(errors: Errors, path: str, message: str) -> None:
    errors.setdefault(path, []).append(message)


def _number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool) and value == value


def _seconds(errors: Errors, path: str, value: Any) -> None:
    if not (isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_SECONDS):
        _add(errors, path, f"Expected whole seconds from 1 to {MAX_SECONDS} (a year).")


# --- event filters ----------------------------------------------------------------------------------------


def filter_errors(node: Any, path: str, event_types: frozenset[str] | None = None) -> Errors:
    """Problems of one event filter, by path."""
    errors: Errors = {}
    if not isinstance(node, dict):
        return {path: ['Expected {"type": …, "where": [...]}.']}
    kind = node.get("type")
    if not (isinstance(kind, str) and kind):
        _add(errors, f"{path}.type", "Expected an event type.")
    elif event_types is not None and kind not in event_types:
        _add(errors, f"{path}.type", f"Unknown event type {kind!r}.")
    where = node.get("where", [])
    if not isinstance(where, list):
        _add(errors, f"{path}.where", "Expected a list of conditions.")
        where = []
    for index, condition in enumerate(where):
        _where_errors(condition, f"{path}.where[{index}]", errors)
    extra = sorted(set(node) - {"type", "where"})
    if extra:
        _add(errors, path, f"Unexpected key(s): {', '.join(extra)}.")
    return errors


def _where_errors(condition: Any, path: str, errors: Errors) -> None:
    if not isinstance(condition, dict):
        _add(errors, path, 'Expected {"path": …, "op": …, "value": …}.')
        return
    if not (isinstance(condition.get("path"), str) and condition["path"]):
        _add(errors, f"{path}.path", "Expected a dotted path into the event's data, e.g. feature.")
    op, value = condition.get("op"), condition.get("value")
    if op not in WHERE_OPS:
        _add(errors, f"{path}.op", f"Expected one of {', '.join(WHERE_OPS)}.")
    elif op in ("in", "not_in") and not (isinstance(value, list) and value):
        _add(errors, f"{path}.value", "Expected a non-empty list.")
    elif op in ORDERED_OPS and not _number(value):
        _add(errors, f"{path}.value", "Expected a number.")
    elif op == "exists" and not isinstance(value, bool):
        _add(errors, f"{path}.value", "Expected true or false.")
    extra = sorted(set(condition) - {"path", "op", "value"})
    if extra:
        _add(errors, path, f"Unexpected key(s): {', '.join(extra)}.")


def data_at(data: Any, path: str) -> Any:
    """The value at a dotted path of an event's data, or None."""
    for part in path.split("."):
        if not isinstance(data, Mapping):
            return None
        data = data.get(part)
    return data


def filter_matches(node: Mapping[str, Any], event_type: str, data: Any) -> bool:
    """Whether an event (its type and data) matches a valid filter."""
    if node["type"] != event_type:
        return False
    return all(_where_holds(condition, data) for condition in node.get("where", []))


def _where_holds(condition: Mapping[str, Any], data: Any) -> bool:
    value, wanted, op = data_at(data, condition["path"]), condition.get("value"), condition["op"]
    if op == "exists":
        return WHERE_OPS[op](value, wanted)
    if value is None:
        return False  # a missing field satisfies no comparison
    if op in ORDERED_OPS:
        if not _number(value):
            return False
        return WHERE_OPS[op](Decimal(str(value)), Decimal(str(wanted)))
    return WHERE_OPS[op](value, wanted)


# --- when -------------------------------------------------------------------------------------------------


def when_errors(when: Any, *, event_types: frozenset[str] | None = None) -> Errors:
    """Problems of a trigger's `when`, by path (`when.event.where[0].op`)."""
    if not isinstance(when, dict) or when.get("kind") not in _WHEN_CHECKS:
        return {"when.kind": [f"Expected one of {', '.join(_WHEN_CHECKS)}."]}
    errors: Errors = {}
    kind = when["kind"]
    allowed = {"kind"} | _WHEN_CHECKS[kind](when, errors, event_types)
    extra = sorted(set(when) - allowed)
    if extra:
        _add(errors, "when", f"Unexpected key(s) for {kind}: {', '.join(extra)}.")
    return errors


def _filters(when: dict, names: tuple[str, ...], errors: Errors, types: frozenset[str] | None) -> None:
    for name in names:
        if name not in when:
            _add(errors, f"when.{name}", "Required.")
        else:
            errors.update(filter_errors(when[name], f"when.{name}", types))


def _check_event(when: dict, errors: Errors, types: frozenset[str] | None) -> set[str]:
    _filters(when, ("event",), errors, types)
    return {"event"}


def _check_count(when: dict, errors: Errors, types: frozenset[str] | None) -> set[str]:
    _filters(when, ("event",), errors, types)
    count = when.get("count")
    if not (isinstance(count, int) and not isinstance(count, bool) and 1 <= count <= 100_000):
        _add(errors, "when.count", "Expected a whole number from 1 to 100000.")
    _seconds(errors, "when.within_seconds", when.get("within_seconds"))
    return {"event", "count", "within_seconds"}


def _check_stall(when: dict, errors: Errors, types: frozenset[str] | None) -> set[str]:
    _filters(when, ("start", "finish"), errors, types)
    _seconds(errors, "when.within_seconds", when.get("within_seconds"))
    if "key" in when and not (isinstance(when["key"], str) and when["key"]):
        _add(errors, "when.key", "Expected a dotted path into the data that ties a finish to its start.")
    return {"start", "finish", "within_seconds", "key"}


def _check_silence(when: dict, errors: Errors, types: frozenset[str] | None) -> set[str]:
    if "event" in when:
        errors.update(filter_errors(when["event"], "when.event", types))
    _seconds(errors, "when.for_seconds", when.get("for_seconds"))
    return {"event", "for_seconds"}


def _check_cohort(when: dict, errors: Errors, types: frozenset[str] | None) -> set[str]:
    if not (isinstance(when.get("cohort"), str) and when["cohort"]):
        _add(errors, "when.cohort", "Expected a cohort key.")
    if when.get("change") not in ("entered", "exited"):
        _add(errors, "when.change", "Expected entered or exited.")
    return {"cohort", "change"}


def _check_stage(when: dict, errors: Errors, types: frozenset[str] | None) -> set[str]:
    for name in ("from", "to"):
        if when.get(name) is not None and not (isinstance(when[name], str) and when[name]):
            _add(errors, f"when.{name}", "Expected a stage key, or null for any stage.")
    if when.get("from") is None and when.get("to") is None:
        _add(errors, "when", "Name the stage left (from), the stage entered (to), or both.")
    return {"from", "to"}


def _check_date(when: dict, errors: Errors, types: frozenset[str] | None) -> set[str]:
    if when.get("field") not in DATE_FIELDS:
        _add(errors, "when.field", f"Expected one of {', '.join(DATE_FIELDS)}.")
    days = when.get("days_before")
    if not (isinstance(days, int) and not isinstance(days, bool) and 0 <= days <= 365):
        _add(errors, "when.days_before", "Expected whole days from 0 to 365.")
    return {"field", "days_before"}


_WHEN_CHECKS: dict[str, Callable[[dict, Errors, frozenset[str] | None], set[str]]] = {
    "event": _check_event,
    "count": _check_count,
    "stall": _check_stall,
    "silence": _check_silence,
    "cohort": _check_cohort,
    "stage": _check_stage,
    "date": _check_date,
}
WhenCheck = Callable[[dict, Errors, "frozenset[str] | None"], set[str]]


def when_check_register(kind: str, check: WhenCheck) -> None:
    """Validate a kind a higher app adds (`triggers.when.when_register`): `check` adds its problems by path
    and returns the keys it allows beside `kind`."""
    _WHEN_CHECKS[kind] = check


# --- actions, follow-up, the whole trigger ----------------------------------------------------------------


def actions_errors(actions: Any, path: str, channels: tuple[str, ...] | None) -> Errors:
    """Problems of an action list: each a channel the registry knows and a template key."""
    errors: Errors = {}
    if not isinstance(actions, list) or not actions:
        return {path: ["Expected a non-empty list of actions."]}
    for index, action in enumerate(actions):
        at = f"{path}[{index}]"
        if not isinstance(action, dict):
            _add(errors, at, 'Expected {"channel": …, "template": …}.')
            continue
        channel = action.get("channel")
        if not isinstance(channel, str) or (channels is not None and channel not in channels):
            _add(errors, f"{at}.channel", f"Expected one of the channels: {', '.join(channels or ())}.")
        if not (isinstance(action.get("template"), str) and action["template"]):
            _add(errors, f"{at}.template", "Expected a template key.")
        if not isinstance(action.get("params", {}), dict):
            _add(errors, f"{at}.params", "Expected an object.")
        if action.get("marketing", False) not in (True, False) or (action.get("marketing") and channel != "email"):
            _add(errors, f"{at}.marketing", "Expected true or false; only an email is marked marketing.")
        extra = sorted(set(action) - {"channel", "template", "params", "marketing"})
        if extra:
            _add(errors, at, f"Unexpected key(s): {', '.join(extra)}.")
    return errors


def follow_up_errors(follow_up: Any, channels: tuple[str, ...] | None, types: frozenset[str] | None) -> Errors:
    """Problems of a follow-up: a goal (an event filter or a metric condition), its window, the escalation."""
    if follow_up is None:
        return {}
    if not isinstance(follow_up, dict):
        return {"follow_up": ['Expected {"goal": …, "within_seconds": …, "escalate": [...]}.']}
    errors: Errors = {}
    goal = follow_up.get("goal")
    if isinstance(goal, dict) and set(goal) == {"event"}:
        errors.update(filter_errors(goal["event"], "follow_up.goal.event", types))
    elif isinstance(goal, dict) and set(goal) == {"condition"}:
        for path, messages in condition_errors(goal["condition"]).items():
            errors[f"follow_up.goal.condition.{path}"] = messages
    else:
        _add(errors, "follow_up.goal", 'Expected {"event": filter} or {"condition": a metric condition tree}.')
    _seconds(errors, "follow_up.within_seconds", follow_up.get("within_seconds"))
    if "escalate" in follow_up:
        errors.update(actions_errors(follow_up["escalate"], "follow_up.escalate", channels))
    if "activity" in follow_up:
        errors.update(filter_errors(follow_up["activity"], "follow_up.activity", types))
    if follow_up.get("escalate_to", "owner_rep") not in AUDIENCES:
        _add(errors, "follow_up.escalate_to", f"Expected one of {', '.join(AUDIENCES)}.")
    extra = sorted(set(follow_up) - {"goal", "within_seconds", "escalate", "activity", "escalate_to"})
    if extra:
        _add(errors, "follow_up", f"Unexpected key(s): {', '.join(extra)}.")
    return errors


def trigger_errors(
    document: Mapping[str, Any],
    *,
    channels: tuple[str, ...] | None = None,
    event_types: frozenset[str] | None = None,
) -> Errors:
    """Every problem of a trigger document, by path; empty when it is valid.

    `channels` defaults to messaging's registry and `event_types` to the inbox's registry, read now, so a
    channel added by another app counts as soon as it is registered.
    """
    channels = channels if channels is not None else known_channels()
    event_types = event_types if event_types is not None else known_event_types()
    errors: Errors = {}
    key = document.get("key")
    if not (isinstance(key, str) and key and key.replace("_", "").replace("-", "").isalnum() and key.islower()):
        errors["key"] = ["Expected a lower-case key of letters, digits, - and _."]
    if not (isinstance(document.get("name"), str) and document["name"].strip()):
        errors["name"] = ["Expected a non-empty name."]
    errors.update(when_errors(document.get("when"), event_types=event_types))
    errors.update(actions_errors(document.get("actions"), "actions", channels))
    errors.update(follow_up_errors(document.get("follow_up"), channels, event_types))
    if document.get("audience", "user") not in AUDIENCES:
        errors["audience"] = [f"Expected one of {', '.join(AUDIENCES)}."]
    elif document.get("audience") == "team" and not document.get("team"):
        errors["team"] = ["Name the team the firing goes to."]
    cap = document.get("cap_seconds")
    if cap is not None:
        _seconds(errors, "cap_seconds", cap)
    errors.update(_setting_errors(document))
    return errors


def _setting_errors(document: Mapping[str, Any]) -> Errors:
    """The plain settings: flags, a whole-number priority, a known re-entry rule."""
    errors: Errors = {}
    for name in ("enabled", "transactional"):
        if not isinstance(document.get(name, False), bool):
            errors[name] = ["Expected true or false."]
    priority = document.get("priority", 0)
    if not (isinstance(priority, int) and not isinstance(priority, bool) and -1000 <= priority <= 1000):
        errors["priority"] = ["Expected a whole number from -1000 to 1000."]
    if document.get("reentry", "every_time") not in REENTRY:
        errors["reentry"] = [f"Expected one of {', '.join(REENTRY)}."]
    return errors


def known_channels() -> tuple[str, ...]:
    from messaging.registry import transport_kinds
    from triggers.actions import handled_channels

    return (*transport_kinds(), *handled_channels())


def known_event_types() -> frozenset[str]:
    from events.schemas import EVENT_TYPES

    return frozenset(EVENT_TYPES)
