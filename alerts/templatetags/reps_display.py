"""Template filters of the rep pages: stored values as a rep reads them (alerts/display.py does the work)."""

from __future__ import annotations

from typing import Any

from django import template

from alerts import display
from alerts.messages import rule_label as _rule_label
from alerts.models import Alert
from alerts.selectors import owner_rep as _owner_rep
from workspaces.models import Workspace

register = template.Library()


@register.filter
def alert_facts(alert: Alert) -> list[tuple[str, str]]:
    """The values that triggered it, labelled and formatted."""
    context = alert.context if isinstance(alert.context, dict) else {}
    values = context.get("values")
    return display.facts(values) if isinstance(values, dict) else []


@register.filter
def money(amount: Any, currency: str = "") -> str:
    """'1,234.00 EUR'; '—' without an amount."""
    return "—" if amount is None or amount == "" else display.format_money(amount, currency)


@register.filter
def rule_label(rule: str) -> str:
    return _rule_label(rule)


@register.filter
def person(user: Any) -> str:
    return (user.get_full_name() or user.get_username()) if user is not None else ""


@register.filter
def rate(value: Any) -> str:
    """An exchange rate without trailing zeros: 1.08, not 1.08000000."""
    return f"{value.normalize():f}" if value is not None else ""


@register.filter
def owner_rep(workspace: Workspace) -> Any:
    """The rep who owns the customer (alerts.selectors.owner_rep)."""
    return _owner_rep(workspace)
