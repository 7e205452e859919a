"""The webhook payloads' own field types: RFC 3339 instants within 1970–2999, IANA time zone names."""

from __future__ import annotations

import functools
import zoneinfo
from datetime import UTC, datetime
from typing import Any

from django.utils.dateparse import parse_datetime
from rest_framework import serializers

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
