"""Money on the rep pages: totals in REPORTING_CURRENCY by admin-kept rates (`ExchangeRate`).

Amounts are kept per currency; a total converts each currency by its rate to the current reporting
currency and says which rates it used and how old the oldest is. A currency with no rate is never
converted (nor dropped): it is listed apart, so a total never hides money it could not add up.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings

from alerts.models import ExchangeRate

CENT = Decimal("0.01")


@dataclass(frozen=True)
class Rate:
    rate: Decimal
    as_of: date | None  # None for the reporting currency itself


@dataclass(frozen=True)
class Rates:
    reporting: str
    by_currency: dict[str, Rate]

    def rate(self, currency: str) -> Rate | None:
        if currency == self.reporting:
            return Rate(Decimal(1), None)
        return self.by_currency.get(currency)

    def convert(self, amount: Decimal, currency: str) -> Decimal | None:
        """The amount in the reporting currency, to the cent; None when the currency has no rate."""
        rate = self.rate(currency)
        return None if rate is None else (amount * rate.rate).quantize(CENT, rounding=ROUND_HALF_UP)


def rates_current() -> Rates:
    """The admin-kept rates to the current REPORTING_CURRENCY (rates kept for another one are ignored)."""
    reporting = settings.REPORTING_CURRENCY
    rows = ExchangeRate.objects.filter(reporting_currency=reporting).only("currency", "rate", "as_of")
    return Rates(reporting, {row.currency: Rate(row.rate, row.as_of) for row in rows})


@dataclass(frozen=True)
class Part:
    """One currency's share of a total: its own amount, and converted when a rate exists."""

    currency: str
    amount: Decimal
    converted: Decimal | None
    rate: Rate | None


@dataclass(frozen=True)
class MoneyTotal:
    reporting: str
    total: Decimal  # the converted parts, summed
    parts: list[Part] = field(default_factory=list)  # converted, largest first
    unconverted: list[Part] = field(default_factory=list)  # no rate: shown apart

    @property
    def as_of(self) -> date | None:
        """The oldest rate used (None when nothing needed converting)."""
        dates = [part.rate.as_of for part in self.parts if part.rate and part.rate.as_of]
        return min(dates) if dates else None

    @property
    def converted_any(self) -> bool:
        return any(part.currency != self.reporting for part in self.parts)

    @property
    def empty(self) -> bool:
        return not (self.parts or self.unconverted)


def money_total(amounts: Iterable[tuple[str, Decimal]], rates: Rates) -> MoneyTotal:
    """Sum (currency, amount) pairs per currency, then across currencies where a rate allows."""
    per_currency: dict[str, Decimal] = {}
    for currency, amount in amounts:
        if amount:
            per_currency[currency] = per_currency.get(currency, Decimal(0)) + amount
    parts = [Part(cur, amt, rates.convert(amt, cur), rates.rate(cur)) for cur, amt in per_currency.items()]
    converted = sorted((p for p in parts if p.converted is not None), key=lambda p: (-p.converted, p.currency))
    apart = sorted((p for p in parts if p.converted is None), key=lambda p: (-p.amount, p.currency))
    return MoneyTotal(rates.reporting, sum((p.converted for p in converted), Decimal(0)), converted, apart)
