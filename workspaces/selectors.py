"""Reads of workspaces for the API and pages: keyword-only, typed, no side effects."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import QuerySet
from django.utils import timezone

from workspaces.models import Workspace


def _workspaces() -> QuerySet[Workspace]:
    # Every reader shows the linked lead, account and contact: one join instead of three queries a row.
    return Workspace.objects.select_related("lead", "account", "contact")


def workspace_list(
    *,
    status: str | None = None,
    expiring_within_days: int | None = None,
    needs_review: bool | None = None,
    now: datetime | None = None,
) -> QuerySet[Workspace]:
    """Workspaces matching every filter given; `expiring_within_days` means trials ending in [now, now+N days]."""
    workspaces = _workspaces()
    if status is not None:
        workspaces = workspaces.filter(status=status)
    if expiring_within_days is not None:
        now = now or timezone.now()
        # status first: the (status, trial_expires_at) index answers this range directly.
        workspaces = workspaces.filter(
            status=Workspace.Status.TRIAL,
            trial_expires_at__gte=now,
            trial_expires_at__lte=now + timedelta(days=expiring_within_days),
        )
    if needs_review is not None:
        workspaces = workspaces.filter(needs_review=needs_review)
    return workspaces.order_by("workspace_id")


def workspace_get(*, workspace_id: str) -> Workspace:
    """The workspace with this id; raises Workspace.DoesNotExist."""
    return _workspaces().get(workspace_id=workspace_id)
