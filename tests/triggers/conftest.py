"""Helpers for the trigger engine's tests: triggers as data, events in the inbox, a fixed clock."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core.cache import cache

from events.models import Event
from triggers.models import Trigger
from triggers.services import ENABLED_CACHE_KEY, trigger_save
from usage.definitions import shipped_document

#: Midday UTC on a Monday: outside the default quiet hours in UTC.
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
_ids = itertools.count(1)


@pytest.fixture(autouse=True)
def no_quiet_hours_or_caps(settings) -> None:
    """Each test opts into the caps and quiet hours it is about."""
    settings.TRIGGERS_QUIET_HOURS = None
    settings.TRIGGERS_WORKSPACE_CAP = None
    settings.TRIGGERS_PERSON_CAP = None


def make_trigger(key: str, when: dict[str, Any], **fields: Any) -> Trigger:
    """A saved, validated trigger; email to the user unless `actions` says otherwise."""
    fields.setdefault("actions", [{"channel": "email", "template": key}])
    return trigger_save(trigger=Trigger(key=key, name=key.replace("_", " "), when=when, **fields))


def event(workspace: str, type_: str, at: datetime, **data: Any) -> Event:
    """A stored provisioning event of this type, time and data."""
    return Event.objects.create(
        source=Event.Source.PROVISIONING,
        external_id=f"msg_trig_{next(_ids)}",
        type=type_,
        occurred_at=at,
        workspace_key=workspace,
        payload={"type": type_, "timestamp": at.isoformat(), "data": {"workspace_id": workspace, **data}},
        status=Event.Status.COMPLETED,
    )


def usage(workspace: str, at: datetime, feature: str = "envelope.send", **data: Any) -> Event:
    return event(workspace, "usage.recorded", at, feature=feature, **data)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


@pytest.fixture(autouse=True)
def no_rep_alert_triggers(request: pytest.FixtureRequest) -> None:
    """The engine's tests define the triggers they are about: the shipped rep-alert triggers (alerts/engine.py,
    which the processing run's alerts pass decides) are removed in the test's transaction (tests/alerts has
    theirs)."""
    if "django_db" in request.keywords or "db" in request.fixturenames:
        Trigger.objects.filter(when__kind="alert_rule").delete()


@pytest.fixture(autouse=True)
def enabled_triggers_not_cached() -> Iterator[None]:
    """The enabled-trigger cache outlives a test's rolled-back rows: each test starts and ends without it."""
    cache.delete(ENABLED_CACHE_KEY)
    yield
    cache.delete(ENABLED_CACHE_KEY)


@pytest.fixture(autouse=True)
def no_shipped_triggers(request: pytest.FixtureRequest) -> None:
    """Tests here start without the shipped triggers (disabled, installed by triggers/migrations/0006), as
    they were written; test_shipped.py is about them and loads them back."""
    if request.module.__name__.endswith("test_shipped"):
        return
    if "django_db" in request.keywords or "db" in request.fixturenames:
        shipped = [item["key"] for item in shipped_document().get("triggers", [])]
        Trigger.objects.filter(key__in=shipped, firings__isnull=True).delete()
