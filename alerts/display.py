"""How the rep pages word stored values: event types and value keys as labels, dates and money formatted.

Alert facts (`Alert.context["values"]`) and timeline values are stored as machine values
(`converted_at 2026-12-07T00:16:08+00:00`, `mrr 147.00` with a separate `currency`); a rep reads
"Converted 7 Dec 2026, 00:16 UTC" and "MRR 147.00 EUR".
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from django.utils import timezone

CENT = Decimal("0.01")

#: Event types as a rep reads them.
EVENT_LABELS: dict[str, str] = {
    "trial.started": "Trial started",
    "subscription.converted": "Converted to paid",
    "workspace.churned": "Churned",
    "billing.payment_failed": "Payment failed",
    "billing.trial_will_end": "Trial ending soon (Stripe)",
    "billing.renewal_updated": "Renewal date changed",
    "usage.recorded": "Usage recorded",
    "plan.limit_reached": "Plan limit reached",
}

#: Value keys as a rep reads them; a key not listed is shown as its words ("some_key" → "Some key").
VALUE_LABELS: dict[str, str] = {
    "account": "Account",
    "amount_due": "Amount due",
    "at_risk_since": "At risk since",
    "attempt_count": "Payment attempt",
    "billing_interval": "Billed",
    "churn_reason": "Reason",
    "churned_at": "Churned",
    "company": "Company",
    "converted_at": "Converted",
    "days_left": "Days left",
    "domain": "Domain",
    "email": "Email",
    "ended_at": "Trial ended",
    "event_id": "Event",
    "failures": "Failed payments",
    "invoice_id": "Invoice",
    "mrr": "MRR",
    "mrr_lost": "MRR lost",
    "next_payment_attempt": "Next attempt",
    "offset_days": "Reminder",
    "plan": "Plan",
    "reason": "Reason",
    "renews_at": "Renews",
    "review_reasons": "Review reasons",
    "started_at": "Trial started",
    "trial_end": "Trial ends",
    "trial_expires_at": "Trial expires",
    "trial_plan": "Plan trialled",
    "trial_started_at": "Trial started",
}
#: Keys holding an amount in the `currency` value beside them.
MONEY_KEYS = ("mrr", "mrr_lost", "amount_due")


def event_label(event_type: str) -> str:
    return EVENT_LABELS.get(event_type) or event_type.replace(".", " ").replace("_", " ").capitalize()


def value_label(key: str) -> str:
    return VALUE_LABELS.get(key) or key.replace("_", " ").capitalize()


def format_money(amount: Any, currency: str) -> str:
    """'1,234.50 EUR'; an amount that is not a number is shown as given."""
    try:
        number = Decimal(str(amount))
    except (InvalidOperation, ValueError):
        return f"{amount} {currency}".strip()
    return f"{number.quantize(CENT, rounding=ROUND_HALF_UP):,.2f} {currency}".strip()


def format_when(moment: datetime) -> str:
    """'7 Dec 2026, 00:16 UTC' (the rep pages speak UTC throughout)."""
    return f"{moment.astimezone(UTC):%-d %b %Y, %H:%M} UTC"


def _as_datetime(value: Any) -> datetime | None:
    if not isinstance(value, str) or len(value) < 10 or value[4:5] != "-":
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if timezone.is_aware(moment) else moment.replace(tzinfo=UTC)


def format_value(key: str, value: Any, currency: str = "") -> str:
    if key in MONEY_KEYS and currency:
        return format_money(value, currency)
    if key == "offset_days":
        return f"{value}-day reminder"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return "; ".join(str(item) for item in value)
    moment = _as_datetime(value)
    return format_when(moment) if moment else str(value)


def facts(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, text) for each stored value worth showing: empty ones left out, `currency` folded into the
    amounts beside it (and shown on its own only when no amount took it)."""
    currency = str(values.get("currency") or "")
    takes_currency = any(values.get(key) not in (None, "") for key in MONEY_KEYS)
    shown = []
    for key, value in values.items():
        if value in (None, "", [], {}) or (key == "currency" and takes_currency):
            continue
        shown.append((value_label(key), format_value(key, value, currency)))
    return shown
