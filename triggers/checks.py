"""System checks for the trigger settings a user can get wrong (read with defaults in triggers/decide.py)."""

from __future__ import annotations

from datetime import time
from typing import Any

from django.conf import settings
from django.core.checks import Error, register

from triggers.decide import DEFAULT_PERSON_CAP, DEFAULT_QUIET_HOURS, DEFAULT_WORKSPACE_CAP


def _cap_ok(value: Any) -> bool:
    """None or empty turns a cap off; otherwise (limit ≥ 1, window seconds ≥ 1)."""
    if not value:
        return True
    return (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(isinstance(part, int) and not isinstance(part, bool) and part >= 1 for part in value)
    )


def _hours_ok(value: Any) -> bool:
    """None or empty turns quiet hours off; otherwise two different HH:MM times."""
    if not value:
        return True
    if not (isinstance(value, list | tuple) and len(value) == 2 and all(isinstance(p, str) for p in value)):
        return False
    try:
        start, end = (time.fromisoformat(part) for part in value)
    except ValueError:
        return False
    return start != end


@register()
def check_trigger_settings(app_configs, **kwargs) -> list[Error]:
    errors = []
    for name, default, code in (
        ("TRIGGERS_WORKSPACE_CAP", DEFAULT_WORKSPACE_CAP, "lifecycle.E080"),
        ("TRIGGERS_PERSON_CAP", DEFAULT_PERSON_CAP, "lifecycle.E081"),
    ):
        value = getattr(settings, name, default)
        if not _cap_ok(value):
            errors.append(
                Error(
                    f"{name}={value!r} is not a cap.",
                    hint="Use (limit, window in seconds), e.g. (3, 86400) for three a day; None turns it off.",
                    id=code,
                )
            )
    hours = getattr(settings, "TRIGGERS_QUIET_HOURS", DEFAULT_QUIET_HOURS)
    if not _hours_ok(hours):
        errors.append(
            Error(
                f"TRIGGERS_QUIET_HOURS={hours!r} is not a pair of different local times.",
                hint='Use ("21:00", "08:00") (in each recipient\'s time zone); None turns quiet hours off.',
                id="lifecycle.E082",
            )
        )
    return errors
