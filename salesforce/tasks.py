"""django-q2 entry points of the Salesforce sync: the drain and the pilot release."""

from __future__ import annotations

from dataclasses import asdict

from salesforce.drain import drain_request, drain_run
from salesforce.pilot import pilot_release


def drain_outbox() -> dict:
    """Send everything due, as the one drainer, until idle (salesforce/drain.py). Enqueued by `drain_request()`
    after processing commits outbox rows, and every minute by schedule as a safety net."""
    return asdict(drain_run())


def release_pilot() -> dict:
    """Every minute, by schedule: release the held rows a widened or ended pilot now takes in, at most
    SALESFORCE_PILOT_RELEASE_PER_MINUTE (salesforce/pilot.py), and ring the drainer to send them."""
    report = pilot_release()
    if report.released:
        drain_request()
    return asdict(report)
