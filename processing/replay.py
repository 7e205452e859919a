"""Replay: re-fold every workspace from the event cache and compare with what is stored.

Streams events in (workspace, time) order with a server-side cursor, so memory stays flat however
large the cache; only one workspace's events and one batch of stored workspaces are held at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from events.jsonbody import PayloadInvalid
from events.models import Event
from processing.pipeline import FOLDED_STATUSES, lifecycle_event
from workspaces.lifecycle import LIFECYCLE_TYPES, WorkspaceState, fold
from workspaces.models import Workspace

BATCH = 1000


@dataclass
class ReplayReport:
    events: int = 0
    workspaces: int = 0
    unreadable: int = 0
    missing: list[str] = field(default_factory=list)
    mismatches: dict[str, dict[str, tuple[Any, Any]]] = field(default_factory=dict)

    @property
    def drifted(self) -> list[str]:
        return sorted({*self.missing, *self.mismatches})


def _event_stream(workspace_key: str | None, chunk_size: int) -> Iterator[tuple]:
    events = Event.objects.filter(type__in=LIFECYCLE_TYPES, status__in=FOLDED_STATUSES)
    if workspace_key:
        events = events.filter(workspace_key=workspace_key)
    return (
        events.order_by("workspace_key", "occurred_at", "id")
        .values_list("workspace_key", "external_id", "type", "occurred_at", "payload", "source")
        .iterator(chunk_size=chunk_size)
    )


def folded_workspaces(
    *, workspace_key: str | None = None, chunk_size: int = 5000, report: ReplayReport | None = None
) -> Iterator[WorkspaceState]:
    """The folded state of each workspace, one at a time, in workspace order."""
    report = report if report is not None else ReplayReport()
    current, pending = None, []
    for key, external_id, type_, occurred_at, payload, source in _event_stream(workspace_key, chunk_size):
        if key != current:
            if pending:
                yield fold(current, pending)
            current, pending = key, []
        report.events += 1
        try:
            pending.append(lifecycle_event(external_id, type_, occurred_at, payload, source))
        except PayloadInvalid:
            report.unreadable += 1
    if pending:
        yield fold(current, pending)


def replay(*, workspace_key: str | None = None, progress: Callable[[ReplayReport], None] | None = None) -> ReplayReport:
    """Fold everything and compare it with the stored workspaces; changes nothing."""
    report = ReplayReport()
    batch: list[WorkspaceState] = []
    for state in folded_workspaces(workspace_key=workspace_key, report=report):
        batch.append(state)
        if len(batch) >= BATCH:
            _compare(batch, report)
            batch = []
            if progress:
                progress(report)
    _compare(batch, report)
    if progress:
        progress(report)
    return report


def _compare(states: list[WorkspaceState], report: ReplayReport) -> None:
    stored = Workspace.objects.in_bulk([s.workspace_id for s in states], field_name="workspace_id")
    for state in states:
        report.workspaces += 1
        if state.status is None:
            continue
        workspace = stored.get(state.workspace_id)
        if workspace is None:
            report.missing.append(state.workspace_id)
            continue
        differences = {
            name: (getattr(workspace, name), value)
            for name, value in state.fields().items()
            if getattr(workspace, name) != value
        }
        if differences:
            report.mismatches[state.workspace_id] = differences
