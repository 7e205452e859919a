"""Display helpers every app's admin uses (the lowest layer, so any admin may import them)."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString


def compact_time(value: datetime | None) -> SafeString | str:
    """A list column's time as "2026-12-07 06:44:50" (UTC), which may wrap between date and time only.

    Django's "Dec. 7, 2026, 6:44 a.m." is twice as wide; three of those pushed columns out of sight.
    """
    if value is None:
        return "-"
    local = timezone.localtime(value)
    return format_html(
        '<time class="engine-time" datetime="{}"><span>{}</span> <span>{}</span></time>',
        local.isoformat(),
        f"{local:%Y-%m-%d}",
        f"{local:%H:%M:%S}",
    )
