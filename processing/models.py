"""What the processing run owns: the per-workspace lock."""

from __future__ import annotations

from django.db import models


class WorkspaceLock(models.Model):
    """One row per workspace key, locked while that workspace's events are folded.

    The workspace row itself may not exist yet (its first event creates it), so the processor locks
    this row instead: two workers can never fold the same workspace at once, and the one that waited
    re-reads every event after the lock is granted.
    """

    workspace_key = models.CharField(max_length=64, primary_key=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "events_workspacelock"

    def __str__(self) -> str:
        return self.workspace_key
