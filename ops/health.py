"""Health of the engine for load balancers and monitors (CONTRACT §6, `GET /healthz`).

Cheap enough to be polled every few seconds: one grouped count over the event status index, one count
of queued tasks, one read of the heartbeat rows. A heartbeat is stamped by a scheduled task (`queue`:
the cluster runs tasks) and by the sweeper (`sweeper`: it runs and finishes); one older than its
HEALTH_*_MAX_AGE_SECONDS makes the answer 503, and `failed` names every part that failed. Answers
say *that* something failed, not the details (the endpoint needs no login); the details go to the log.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from django.conf import settings
from django.db import DatabaseError
from django.db.models import Count
from django.utils import timezone
from django_q.brokers.redis_broker import Redis as RedisBroker
from django_q.models import OrmQ

from events.models import Event
from ops.models import Heartbeat

logger = logging.getLogger(__name__)

#: The statuses that say whether the pipeline keeps up; `completed` and the rest only grow.
WATCHED_EVENT_STATUSES = (Event.Status.NEW, Event.Status.PROCESSING, Event.Status.ERROR, Event.Status.REVIEW)
REDIS_TIMEOUT_SECONDS = 1.0


def event_status_counts() -> dict[str, int]:
    rows = (
        Event.objects.filter(status__in=WATCHED_EVENT_STATUSES)
        .values("status")
        .annotate(n=Count("id"))
        .order_by()  # the model's default ordering would join the GROUP BY
    )
    counts = dict.fromkeys(map(str, WATCHED_EVENT_STATUSES), 0)
    counts.update({row["status"]: row["n"] for row in rows})
    return counts


def queued_task_count() -> int:
    if settings.Q_BROKER == "orm":
        return OrmQ.objects.count()
    broker = RedisBroker()  # the list key exactly as django-q names it
    # django-q's own connection has no timeout: a probe must not hang on an unreachable Redis.
    broker.connection = redis.from_url(
        settings.Q_BROKER, socket_connect_timeout=REDIS_TIMEOUT_SECONDS, socket_timeout=REDIS_TIMEOUT_SECONDS
    )
    try:
        return int(broker.queue_size())
    finally:
        broker.connection.close()


def broker_display(url: str) -> str:
    """The broker address without its password (in the user part or a `password=` query argument)."""
    parts = urlsplit(url)
    if not parts.scheme:
        return url
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{parts.username}@{host}" if parts.username else host
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "password"])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _failure(what: str, exc: Exception) -> str:
    logger.warning("health check: %s failed: %r", what, exc)
    return type(exc).__name__


def _database() -> tuple[str, dict[str, int] | None]:
    try:
        return "ok", event_status_counts()
    except DatabaseError as exc:
        return f"error: {_failure('database', exc)}", None


def _queue() -> dict[str, Any]:
    queue: dict[str, Any] = {"broker": broker_display(settings.Q_BROKER)}
    try:
        queue["queued_tasks"] = queued_task_count()
    except (DatabaseError, redis.RedisError, OSError) as exc:
        queue["error"] = _failure("queue", exc)
    return queue


def heartbeat_max_ages() -> dict[str, int]:
    return {
        Heartbeat.Name.QUEUE: settings.HEALTH_QUEUE_HEARTBEAT_MAX_AGE_SECONDS,
        Heartbeat.Name.SWEEPER: settings.HEALTH_SWEEPER_HEARTBEAT_MAX_AGE_SECONDS,
    }


def heartbeat_report(*, now: datetime | None = None) -> dict[str, dict[str, Any]]:
    """Per heartbeat: `{"status": "ok" | "stale" | "missing" | "error: …", "age_seconds", "max_age_seconds"}`."""
    now = now or timezone.now()
    limits = heartbeat_max_ages()
    try:
        beats = dict(Heartbeat.objects.filter(name__in=list(limits)).values_list("name", "beat_at"))
    except DatabaseError as exc:
        failure = f"error: {_failure('heartbeats', exc)}"
        return {
            name: {"status": failure, "age_seconds": None, "max_age_seconds": limit} for name, limit in limits.items()
        }
    report = {}
    for name, limit in limits.items():
        age = round((now - beats[name]).total_seconds(), 1) if name in beats else None
        status = "missing" if age is None else ("ok" if age <= limit else "stale")
        report[name] = {"status": status, "age_seconds": age, "max_age_seconds": limit}
    return report


def health_report() -> dict[str, Any]:
    """`{"status": "ok" | "degraded", "database", "queue", "heartbeats", "failed": [parts]}`."""
    database, events = _database()
    queue = _queue()
    if events is not None:
        queue["events"] = events
    heartbeats = heartbeat_report()
    failed = [name for name, ok in (("database", database == "ok"), ("queue", "error" not in queue)) if not ok]
    if settings.HEALTH_CHECK_HEARTBEATS:
        failed += [f"{name}_heartbeat" for name, beat in heartbeats.items() if beat["status"] != "ok"]
    return {
        "status": "degraded" if failed else "ok",
        "database": database,
        "queue": queue,
        "heartbeats": heartbeats,
        "failed": failed,
    }
