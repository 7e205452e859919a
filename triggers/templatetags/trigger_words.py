"""Template helpers for trigger messages (`{% load trigger_words %}`): a firing's why in words.

A message should read well with real data: the metric values a cohort was entered on, a window as
"48 hours" rather than 172800, the events a count or stall was decided on. Each helper reads only the
firing's stored explanation or the workspace's own rows, never makes a value up, and shows nothing when
the value is absent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from django import template
from django.db.models import Sum
from django.utils import timezone

from events.models import Event
from usage.models import UsageDaily

register = template.Library()
MAX_EVENTS = 10


@register.filter
def why_metrics(explanation: Mapping[str, Any] | None) -> dict[str, Any]:
    """{metric: value} of every metric a cohort or stage was decided on (an escalation: its original's)."""
    if not isinstance(explanation, Mapping):
        return {}
    if explanation.get("kind") == "escalation":
        explanation = explanation.get("original") or {}
    why = explanation.get("why") or {}
    found: dict[str, Any] = {}
    _leaves(why.get("condition") or {}, found)
    return found


def _leaves(node: Any, found: dict[str, Any]) -> None:
    if not isinstance(node, Mapping):
        return
    if "metric" in node:
        found.setdefault(node["metric"], node.get("actual"))
    for group in ("all", "any"):
        for child in node.get(group) or []:
            _leaves(child, found)
    _leaves(node.get("not"), found)


@register.filter
def percent(value: Any, mode: str = "") -> str:
    """0.42 → "42%"; with "abs", -0.42 → "42%" (for "fell by …"). Empty when there is no number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return ""
    number = abs(value) if mode == "abs" else value
    return f"{round(number * 100):d}%"


@register.filter
def number(value: Any) -> str:
    """A metric value as a person reads it: 2 → "2", -0.99256 → "-0.99", None → "" (not known)."""
    if value is None or isinstance(value, bool):
        return "" if value is None else str(value)
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))
    return str(value)


@register.filter
def duration(seconds: Any) -> str:
    """172800 → "48 hours", 3600 → "1 hour", 1209600 → "14 days", 90 → "90 seconds"."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        return ""
    seconds = int(seconds)
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size and seconds % size == 0 and not (unit == "day" and seconds <= 2 * 86400):
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{seconds} second{'' if seconds == 1 else 's'}"


@register.filter
def label(key: Any, names: Mapping[str, str] | None = None) -> str:
    """A product's or feature's display name from `names` (a trigger's params), else its key in words:
    "integration.hubspot" → "hubspot", "audit.export" → "audit export"."""
    if not isinstance(key, str) or not key:
        return ""
    if isinstance(names, Mapping) and isinstance(names.get(key), str):
        return names[key]
    head, _, tail = key.partition(".")
    words = tail if head == "integration" and tail else key
    return words.replace(".", " ").replace("_", " ")


@register.filter
def get_item(mapping: Any, key: Any) -> Any:
    """`mapping[key]` for a key held in a variable (`params.pitches|get_item:product`); None when absent."""
    return mapping.get(key) if isinstance(mapping, Mapping) and isinstance(key, str) else None


@register.filter
def labelled(keys: Iterable[Any] | None, names: Mapping[str, str] | None = None) -> list[str]:
    """`label` for each key of a list."""
    return [label(key, names) for key in keys or []]


@register.filter
def and_list(items: Iterable[Any] | None) -> str:
    """["a", "b", "c"] → "a, b and c"; one item alone; empty for none."""
    words = [str(item) for item in items or [] if str(item)]
    return " and ".join([", ".join(words[:-1]), words[-1]]) if len(words) > 1 else "".join(words)


@register.filter
def as_datetime(value: Any) -> datetime | None:
    """An explanation's ISO time as a datetime, for the `date` filter (None when it is not one)."""
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


@register.filter
def goal_words(goal: Any) -> str:
    """A follow-up's goal in words: `features_30d >= 4`, or `a usage.recorded event (feature in […])`."""
    if not isinstance(goal, Mapping):
        return ""
    if isinstance(goal.get("event"), Mapping):
        node = goal["event"]
        where = and_list(_where_words(c) for c in node.get("where") or [] if isinstance(c, Mapping))
        return f"a {node.get('type')} event" + (f" with {where}" if where else "")
    parts: list[str] = []
    _conditions(goal.get("condition"), parts)
    return " and ".join(parts)


def _where_words(condition: Mapping[str, Any]) -> str:
    """`feature in [a, b]` → "feature one of a or b"; `outcome == success` → "outcome success"."""
    path, op, value = condition.get("path"), condition.get("op"), condition.get("value")
    if op in ("in", "not_in") and isinstance(value, list):
        listed = " or ".join([", ".join(map(str, value[:-1])), str(value[-1])]) if len(value) > 1 else str(value[0])
        return f"{path} {'one of' if op == 'in' else 'none of'} {listed}"
    if op == "exists":
        return f"{path} {'present' if value else 'absent'}"
    return f"{path} {value}" if op == "==" else f"{path} {op} {value}"


def _conditions(node: Any, parts: list[str]) -> None:
    if not isinstance(node, Mapping):
        return
    if "metric" in node:
        parts.append(f"{node['metric']} {node.get('op')} {node.get('value')}")
    for group in ("all", "any"):
        for child in node.get(group) or []:
            _conditions(child, parts)


@register.simple_tag
def top_features(workspace_id: str, limit: int = 3, days: int = 30) -> list[str]:
    """The workspace's most used features in its last `days` days (by events), most used first."""
    since = timezone.now().date() - timedelta(days=int(days) - 1)
    rows = (
        UsageDaily.objects.filter(workspace_key=workspace_id, day__gte=since)
        .values("feature")
        .annotate(events=Sum("events"))
        .order_by("-events", "feature")
    )
    return [row["feature"] for row in rows[: int(limit)]]


@register.simple_tag
def explained_events(event_ids: Iterable[int] | None) -> list[dict[str, Any]]:
    """The events a firing names (its explanation's event_ids, the first few), oldest first: id, type, time
    and data, as a person reading the message wants them."""
    ids = [pk for pk in (event_ids or []) if isinstance(pk, int)][:MAX_EVENTS]
    rows = Event.objects.filter(pk__in=ids).order_by("occurred_at", "pk").only("id", "type", "occurred_at", "payload")
    return [_event(row) for row in rows]


@register.simple_tag
def recent_events(workspace_id: str, event_type: str, limit: int = 5) -> list[dict[str, Any]]:
    """The workspace's latest events of a type (not refused, not an erased person's), newest first."""
    rows = (
        Event.objects.filter(workspace_key=workspace_id, type=event_type, suppressed=False)
        .exclude(status=Event.Status.REJECTED)
        .order_by("-occurred_at", "-pk")
        .only("id", "type", "occurred_at", "payload")[: min(int(limit), MAX_EVENTS)]
    )
    return [_event(row) for row in rows]


def _event(row: Event) -> dict[str, Any]:
    payload = row.payload if isinstance(row.payload, dict) else {}
    data = payload.get("data") if isinstance(payload.get("data"), dict) else {}
    return {"id": row.pk, "type": row.type, "at": row.occurred_at, "data": data}


@register.simple_tag
def top_products(workspace_id: str, days: int = 30) -> list[dict[str, Any]]:
    """The products the workspace used in its last `days` days, most used first: product and events."""
    since = timezone.now().date() - timedelta(days=int(days) - 1)
    rows = (
        UsageDaily.objects.filter(workspace_key=workspace_id, day__gte=since)
        .exclude(product="")
        .values("product")
        .annotate(events=Sum("events"))
        .order_by("-events", "product")
    )
    return [{"product": row["product"], "events": row["events"]} for row in rows]
