"""When a rep may be reached: quiet hours, the digest hour and time away, all in the rep's own time zone.

A local wall-clock time becomes an instant through zoneinfo on its local date, never by adding 24 hours,
so a digest at 08:00 stays at 08:00 across a DST change and quiet hours over midnight end the next day.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings

from alerts.models import Rep


def _instant(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The UTC instant of a local date and time (a time skipped by DST lands just after the gap)."""
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


def quiet_hours_end(rep: Rep, when: datetime) -> datetime | None:
    """When the rep's quiet hours end, if `when` falls in them; else None."""
    start, end = rep.quiet_start, rep.quiet_end
    if start is None or end is None or start == end:
        return None
    local = when.astimezone(rep.zone)
    now = local.time()
    if start < end:  # e.g. 12:00-13:00, within one day
        return _instant(local.date(), end, rep.zone) if start <= now < end else None
    if now >= start:  # e.g. 22:00-07:00, in the evening part: ends tomorrow
        return _instant(local.date() + timedelta(days=1), end, rep.zone)
    return _instant(local.date(), end, rep.zone) if now < end else None


def past_quiet_hours(rep: Rep | None, when: datetime) -> datetime:
    """`when`, or the end of the rep's quiet hours if it falls in them: an alert waits, it is never dropped."""
    if rep is None:
        return when
    return quiet_hours_end(rep, when) or when


def next_digest_at(now: datetime, rep: Rep | None = None) -> datetime:
    """The next daily digest after `now`: the rep's digest hour (else ALERT_DIGEST_HOUR) in their zone
    (else UTC), moved to the end of their quiet hours if it falls in them."""
    hour = settings.ALERT_DIGEST_HOUR if rep is None or rep.digest_hour is None else rep.digest_hour
    zone = rep.zone if rep is not None else ZoneInfo("UTC")
    today = now.astimezone(zone).date()
    at = _instant(today, time(hour), zone)
    if at <= now:
        at = _instant(today + timedelta(days=1), time(hour), zone)
    return past_quiet_hours(rep, at)


def rep_is_away(rep: Rep, now: datetime) -> bool:
    """Between the first and the last day away (inclusive), by the rep's local date."""
    if rep.away_from is None or rep.away_until is None:
        return False
    return rep.away_from <= now.astimezone(rep.zone).date() <= rep.away_until
