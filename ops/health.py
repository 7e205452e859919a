"""Health of the engine for load balancers and monitors (CONTRACT §6, `GET /healthz`).

Cheap enough to be polled every few seconds: one grouped count over the event status index, one count
of queued tasks, one read of the heartbeat rows. A heartbeat is stamped by a scheduled task (`queue`:
the cluster runs tasks) and by the sweeper (`sweeper`: it runs and finishes); one older than its
HEALTH_*_MAX_AGE_SECONDS makes the answer 503, and `failed` names every part that failed. Answers
say *that* something failed, not the details (the endpoint needs no login); the details go to the log.

For HEALTH_STARTUP_GRACE_SECONDS after this process started, a missing or stale heartbeat does not fail
the check (the first scheduled beat comes about a minute after a clean start, and a balancer would keep
a fresh instance out meanwhile); the answer lists it under `starting`. The database and the queue count
from the first probe. A probe is polled every few seconds, so the log gets one line per change of
state, not one per probe.
"""

from __future__ import annotations

import logging
import threading
import time
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
from failures.models import Heartbeat

logger = logging.getLogger(__name__)

#: The statuses that say whether the pipeline keeps up; `completed` and the rest only grow.
WATCHED_EVENT_STATUSES = (Event.Status.NEW, Event.Status.PROCESSING, Event.Status.ERROR, Event.Status.REVIEW)
REDIS_TIMEOUT_SECONDS = 1.0

#: When this process started (ops.apps sets it as the app loads); the grace period counts from here.
process_started_at = time.monotonic()
_state_lock = threading.Lock()
_last_state: tuple[str, tuple[str, ...]] | None = None


def process_started() -> None:
    global process_started_at
    process_started_at = time.monotonic()


def startup_grace_remaining() -> float:
    """Seconds of HEALTH_STARTUP_GRACE_SECONDS this process has left (0 once it is over)."""
    return max(0.0, settings.HEALTH_STARTUP_GRACE_SECONDS - (time.monotonic() - process_started_at))


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


def _failure(what: str, exc: Exception, problems: list[str] | None) -> str:
    """The answer names the exception class only; the detail goes to the log line of the state change."""
    if problems is not None:
        problems.append(f"{what}: {exc!r}")
    return type(exc).__name__


def _database(problems: list[str]) -> tuple[str, dict[str, int] | None]:
    try:
        return "ok", event_status_counts()
    except DatabaseError as exc:
        return f"error: {_failure('database', exc, problems)}", None


def _queue(problems: list[str]) -> dict[str, Any]:
    queue: dict[str, Any] = {"broker": broker_display(settings.Q_BROKER)}
    try:
        queue["queued_tasks"] = queued_task_count()
    except (DatabaseError, redis.RedisError, OSError) as exc:
        queue["error"] = _failure("queue", exc, problems)
    return queue


def heartbeat_max_ages() -> dict[str, int]:
    return {
        Heartbeat.Name.QUEUE: settings.HEALTH_QUEUE_HEARTBEAT_MAX_AGE_SECONDS,
        Heartbeat.Name.SWEEPER: settings.HEALTH_SWEEPER_HEARTBEAT_MAX_AGE_SECONDS,
    }


def heartbeat_report(*, now: datetime | None = None, problems: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Per heartbeat: `{"status": "ok" | "stale" | "missing" | "error: …", "age_seconds", "max_age_seconds"}`."""
    now = now or timezone.now()
    limits = heartbeat_max_ages()
    try:
        beats = dict(Heartbeat.objects.filter(name__in=list(limits)).values_list("name", "beat_at"))
    except DatabaseError as exc:
        failure = f"error: {_failure('heartbeats', exc, problems)}"
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
    problems: list[str] = []
    database, events = _database(problems)
    queue = _queue(problems)
    if events is not None:
        queue["events"] = events
    heartbeats = heartbeat_report(problems=problems)
    failed = [name for name, ok in (("database", database == "ok"), ("queue", "error" not in queue)) if not ok]
    waived: list[str] = []
    if settings.HEALTH_CHECK_HEARTBEATS:
        late = [f"{name}_heartbeat" for name, beat in heartbeats.items() if beat["status"] in ("missing", "stale")]
        grace = startup_grace_remaining() if late else 0.0
        waived = late if grace > 0 else []
        failed += [f"{name}_heartbeat" for name, beat in heartbeats.items() if beat["status"] != "ok"]
        failed = [name for name in failed if name not in waived]
    report: dict[str, Any] = {
        "status": "degraded" if failed else "ok",
        "database": database,
        "queue": queue,
        "heartbeats": heartbeats,
        "failed": failed,
    }
    if waived:
        report["starting"] = {"grace_remaining_seconds": round(grace, 1), "waived": waived}
    _log_state_change(report, problems)
    return report


def _log_state_change(report: dict[str, Any], problems: list[str]) -> None:
    """One log line when the answer changes (ok → degraded, which parts fail, starting), none per probe."""
    global _last_state
    status = "starting" if "starting" in report and report["status"] == "ok" else report["status"]
    state = (status, tuple(report["failed"] or report.get("starting", {}).get("waived", ())))
    with _state_lock:
        previous, _last_state = _last_state, state
    if state == previous:
        return
    if status == "degraded":
        beats = [f"{name} heartbeat {beat['status']}" for name, beat in report["heartbeats"].items()]
        failing = ", ".join(report["failed"])
        logger.error("health: degraded (503), failing: %s; %s", failing, "; ".join(problems + beats))
    elif status == "starting":
        logger.info(
            "health: starting, %s not counted for another %.0f s (HEALTH_STARTUP_GRACE_SECONDS)",
            ", ".join(state[1]),
            report["starting"]["grace_remaining_seconds"],
        )
    elif previous is not None:
        logger.info("health: ok again (was %s: %s)", previous[0], ", ".join(previous[1]))
