"""Stripe's objects as small typed records (`Subscription`, `Invoice`, …) with the two derivations the
webhook mapping and the reconciliation share: the plan name and the MRR (money in major units, per
month). Plain parsing of the JSON Stripe sends; the stripe library itself is only in stripe_adapter.py.

Shapes are those of the current API version (subscription periods on the items, invoice lines priced
through `pricing.price_details`, the invoice's subscription under `parent.subscription_details`); the
older shapes (top-level `current_period_end`, `invoice.subscription`, items carrying a legacy `plan`,
as localstripe serves them) are read too.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

ZERO_DECIMAL_CURRENCIES = frozenset(
    ["BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"]
)
THREE_DECIMAL_CURRENCIES = frozenset(["BHD", "JOD", "KWD", "OMR", "TND"])
#: How many of each billing interval make a month.
PER_MONTH = {"day": Decimal(365) / 12, "week": Decimal(52) / 12, "month": Decimal(1), "year": Decimal(1) / 12}
CENTS = Decimal("0.01")


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | str | Decimal):
        return None
    try:
        return Decimal(value)
    except InvalidOperation:
        return None


def instant(epoch: Any) -> datetime | None:
    """Unix seconds as an aware datetime; None when absent or beyond what a datetime holds."""
    seconds = _int(epoch)
    if seconds is None:
        return None
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _id(value: Any) -> str:
    """An expandable field's id, whether it arrived as an id or as the expanded object."""
    return _text(value) or _text(_map(value).get("id"))


def _metadata(value: Any) -> dict[str, str]:
    return {key: item for key, item in _map(_map(value).get("metadata")).items() if isinstance(item, str)}


def to_major(amount_minor: Decimal, currency: str) -> Decimal:
    """Minor units (cents; yen itself; fils) to the currency's major unit."""
    code = currency.upper()
    exponent = 0 if code in ZERO_DECIMAL_CURRENCIES else 3 if code in THREE_DECIMAL_CURRENCIES else 2
    return amount_minor.scaleb(-exponent)


def monthly(amount_minor: Decimal, *, quantity: int, currency: str, interval: str, interval_count: int) -> Decimal:
    """One item's monthly amount in major units, unrounded: year ÷ 12, week × 52/12, day × 365/12."""
    return to_major(amount_minor, currency) * quantity * PER_MONTH[interval] / max(interval_count, 1)


@dataclass(frozen=True)
class Customer:
    id: str
    email: str = ""
    metadata: Mapping[str, str] | None = None

    @classmethod
    def parse(cls, value: Any) -> Customer:
        """An id alone, or the expanded customer with its email and metadata."""
        expanded = _map(value)
        return cls(id=_id(value), email=_text(expanded.get("email")), metadata=_metadata(expanded))

    @property
    def meta(self) -> Mapping[str, str]:
        return self.metadata or {}


@dataclass(frozen=True)
class Price:
    """A Price, or a legacy Plan (which localstripe serves): amounts in minor units."""

    id: str
    product_id: str
    unit_amount: Decimal | None
    currency: str
    interval: str
    interval_count: int
    lookup_key: str = ""
    nickname: str = ""
    product_plan: str = ""
    metadata_plan: str = ""

    @classmethod
    def parse(cls, value: Any) -> Price | None:
        price = _map(value)
        if not price:
            return None
        recurring = _map(price.get("recurring")) or price  # a legacy Plan keeps interval at the top
        amount = _decimal(price.get("unit_amount"))
        if amount is None:
            amount = _decimal(price.get("unit_amount_decimal"))
        if amount is None:
            amount = _decimal(price.get("amount"))
        product = price.get("product")
        return cls(
            id=_text(price.get("id")),
            product_id=_id(product),
            unit_amount=amount,
            currency=_text(price.get("currency")).upper(),
            interval=_text(recurring.get("interval")),
            interval_count=_int(recurring.get("interval_count")) or 1,
            lookup_key=_text(price.get("lookup_key")),
            nickname=_text(price.get("nickname")),
            product_plan=_metadata(product).get("plan", "").strip(),
            metadata_plan=_metadata(price).get("plan", "").strip(),
        )

    @property
    def plan_name(self) -> str:
        """The name the provisioning system uses when Stripe is set up to say it: lookup key, then a
        `plan` in the product's or price's metadata, then the nickname; the product id as a last resort."""
        return self.lookup_key or self.product_plan or self.metadata_plan or self.nickname or self.product_id

    def monthly(self, quantity: int, currency: str) -> Decimal | None:
        if self.unit_amount is None or self.interval not in PER_MONTH:
            return None
        return monthly(
            self.unit_amount,
            quantity=quantity,
            currency=currency or self.currency,
            interval=self.interval,
            interval_count=self.interval_count,
        )


def _sum_cents(parts: list[Decimal | None]) -> Decimal | None:
    if not parts or any(part is None for part in parts):
        return None  # an item without a unit amount (tiered, metered): no honest MRR
    return sum(parts, Decimal(0)).quantize(CENTS, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class SubscriptionItem:
    price: Price
    quantity: int
    current_period_end: datetime | None


@dataclass(frozen=True)
class Subscription:
    id: str
    status: str
    customer: Customer
    metadata: Mapping[str, str]
    items: tuple[SubscriptionItem, ...]
    currency: str
    created: datetime | None
    start_date: datetime | None
    trial_end: datetime | None
    ended_at: datetime | None
    canceled_at: datetime | None
    cancellation: Mapping[str, str]
    legacy_period_end: datetime | None = None

    @classmethod
    def parse(cls, value: Any) -> Subscription:
        sub = _map(value)
        items = []
        for raw in _list(_map(sub.get("items")).get("data")):
            item = _map(raw)
            price = Price.parse(item.get("price")) or Price.parse(item.get("plan"))
            if price is not None:
                items.append(
                    SubscriptionItem(price, _int(item.get("quantity")) or 1, instant(item.get("current_period_end")))
                )
        details = _map(sub.get("cancellation_details"))
        return cls(
            id=_text(sub.get("id")),
            status=_text(sub.get("status")),
            customer=Customer.parse(sub.get("customer")),
            metadata=_metadata(sub),
            items=tuple(items),
            currency=_text(sub.get("currency")).upper(),
            created=instant(sub.get("created")),
            start_date=instant(sub.get("start_date")),
            trial_end=instant(sub.get("trial_end")),
            ended_at=instant(sub.get("ended_at")),
            canceled_at=instant(sub.get("canceled_at")),
            cancellation={key: _text(details.get(key)) for key in ("reason", "feedback", "comment")},
            legacy_period_end=instant(sub.get("current_period_end")),
        )

    @property
    def workspace_id(self) -> str:
        return self.metadata.get("workspace_id", "").strip() or self.customer.meta.get("workspace_id", "").strip()

    @property
    def email(self) -> str:
        return (
            self.metadata.get("email", "").strip() or self.customer.email or self.customer.meta.get("email", "").strip()
        )

    @property
    def plan(self) -> str:
        """The subscription's own `metadata.plan` wins; otherwise its first item's price names it."""
        named = self.metadata.get("plan", "").strip()
        return named or (self.items[0].price.plan_name if self.items else "")

    @property
    def currency_code(self) -> str:
        return self.currency or (self.items[0].price.currency if self.items else "")

    @property
    def mrr(self) -> Decimal | None:
        return _sum_cents([item.price.monthly(item.quantity, self.currency_code) for item in self.items])

    @property
    def billing_interval(self) -> str:
        return self.items[0].price.interval if self.items else ""

    @property
    def renews_at(self) -> datetime | None:
        ends = [item.current_period_end for item in self.items if item.current_period_end is not None]
        return min(ends) if ends else self.legacy_period_end

    @property
    def cancellation_reason(self) -> str:
        """`reason: feedback - comment`, as much of it as Stripe has (e.g. `cancellation_requested: too_expensive`)."""
        head = ": ".join(part for part in (self.cancellation["reason"], self.cancellation["feedback"]) if part)
        comment = self.cancellation["comment"]
        return (f"{head} - {comment}" if head and comment else head or comment)[:255]


def interval_from_period(start: datetime, end: datetime) -> tuple[str, int] | None:
    """The billing interval of a line's period: whole months (Stripe clamps the day to the month's end),
    whole years, whole weeks, or days."""
    months = (end.year - start.year) * 12 + end.month - start.month
    last_day = calendar.monthrange(end.year, end.month)[1]
    if months > 0 and (end.day == start.day or (end.day == last_day and start.day > end.day)):
        return ("year", months // 12) if months % 12 == 0 else ("month", months)
    days = round((end - start).total_seconds() / 86400)
    if days <= 0:
        return None
    return ("week", days // 7) if days % 7 == 0 else ("day", days)


@dataclass(frozen=True)
class InvoiceLine:
    price: Price | None  # only when the price arrived expanded (older API versions, or an `expand`)
    unit_amount: Decimal | None
    quantity: int
    period: tuple[datetime, datetime] | None
    metadata: Mapping[str, str]
    subscription_line: bool
    proration: bool

    @classmethod
    def parse(cls, value: Any) -> InvoiceLine:
        line = _map(value)
        pricing = _map(line.get("pricing"))
        price = Price.parse(_map(pricing.get("price_details")).get("price")) or Price.parse(line.get("price"))
        parent = _map(line.get("parent"))
        item_details = _map(parent.get("subscription_item_details"))
        period = _map(line.get("period"))
        start, end = instant(period.get("start")), instant(period.get("end"))
        unit = _decimal(pricing.get("unit_amount_decimal"))
        return cls(
            price=price,
            unit_amount=unit if unit is not None else (price.unit_amount if price else None),
            quantity=_int(line.get("quantity")) or 1,
            period=(start, end) if start and end else None,
            metadata=_metadata(line),
            subscription_line=bool(item_details) or _text(line.get("type")) == "subscription",
            proration=bool(item_details.get("proration") or line.get("proration")),
        )

    def monthly(self, currency: str) -> Decimal | None:
        if self.price is not None and self.price.interval:
            return self.price.monthly(self.quantity, currency)
        interval = interval_from_period(*self.period) if self.period else None
        if interval is None or self.unit_amount is None:
            return None
        return monthly(
            self.unit_amount,
            quantity=self.quantity,
            currency=currency,
            interval=interval[0],
            interval_count=interval[1],
        )

    @property
    def interval(self) -> str:
        if self.price is not None and self.price.interval:
            return self.price.interval
        interval = interval_from_period(*self.period) if self.period else None
        return interval[0] if interval else ""


@dataclass(frozen=True)
class Invoice:
    id: str
    customer: Customer
    customer_email: str
    subscription_id: str
    subscription_metadata: Mapping[str, str]
    billing_reason: str
    amount_paid: int
    amount_due: int
    currency: str
    attempt_count: int | None
    next_payment_attempt: datetime | None
    lines: tuple[InvoiceLine, ...]

    @classmethod
    def parse(cls, value: Any) -> Invoice:
        invoice = _map(value)
        details = _map(_map(invoice.get("parent")).get("subscription_details"))
        legacy = _map(invoice.get("subscription_details"))
        lines = tuple(InvoiceLine.parse(line) for line in _list(_map(invoice.get("lines")).get("data")))
        return cls(
            id=_text(invoice.get("id")),
            customer=Customer.parse(invoice.get("customer")),
            customer_email=_text(invoice.get("customer_email")),
            subscription_id=_id(details.get("subscription")) or _id(invoice.get("subscription")),
            subscription_metadata=_metadata(details) or _metadata(legacy),
            billing_reason=_text(invoice.get("billing_reason")),
            amount_paid=_int(invoice.get("amount_paid")) or 0,
            amount_due=_int(invoice.get("amount_due")) or 0,
            currency=_text(invoice.get("currency")).upper(),
            attempt_count=_int(invoice.get("attempt_count")),
            next_payment_attempt=instant(invoice.get("next_payment_attempt")),
            lines=lines,
        )

    @property
    def plan_lines(self) -> list[InvoiceLine]:
        return [line for line in self.lines if line.subscription_line and not line.proration]

    @property
    def workspace_id(self) -> str:
        line_ids = [line.metadata.get("workspace_id", "").strip() for line in self.plan_lines]
        return (
            self.subscription_metadata.get("workspace_id", "").strip()
            or self.customer.meta.get("workspace_id", "").strip()
            or next((found for found in line_ids if found), "")
        )

    @property
    def plan(self) -> str:
        """Named only as reliably as the subscription events name it: the subscription's `metadata.plan`
        (snapshotted on the invoice), or an expanded price. A bare price id is not a plan name."""
        named = self.subscription_metadata.get("plan", "").strip()
        if named:
            return named
        for line in self.plan_lines:
            if line.metadata.get("plan", "").strip():
                return line.metadata["plan"].strip()
            if line.price is not None and line.price.interval:
                return line.price.plan_name
        return ""

    @property
    def mrr(self) -> Decimal | None:
        return _sum_cents([line.monthly(self.currency) for line in self.plan_lines])

    @property
    def billing_interval(self) -> str:
        return next((line.interval for line in self.plan_lines if line.interval), "")

    def major(self, amount_minor: int) -> Decimal:
        return to_major(Decimal(amount_minor), self.currency).quantize(CENTS, rounding=ROUND_HALF_UP)
