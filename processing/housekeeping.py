"""Housekeeping of the task queue: saved results pruned on a schedule."""

from __future__ import annotations

from django.conf import settings


def task_results_prune(*, keep: int | None = None) -> int:
    """Delete saved successful task results beyond the newest `keep` (Q_SUCCESS_KEEP); return how many.

    Runs on a schedule instead of django-q2's save_limit, whose pruning reads and locks every saved
    success on every task it saves. Failures are never pruned here: they are what an admin retries.
    """
    from django_q.models import Success

    keep = settings.Q_SUCCESS_KEEP if keep is None else keep
    if keep < 0:
        return 0
    kept = list(Success.objects.order_by("-stopped", "-pk").values_list("pk", flat=True)[:keep])
    deleted, _ = Success.objects.exclude(pk__in=kept).delete()
    return deleted
