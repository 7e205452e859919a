"""django-q2 entry points of operations monitoring, both scheduled (every minute, no catch-up)."""

from __future__ import annotations

from django.utils import timezone

from ops.services import heartbeat_beat, task_results_prune
from ops.sla import sla_evaluate


def heartbeat() -> str:
    """Proves the cluster takes and runs scheduled tasks: /healthz reads the row's age."""
    now = timezone.now()
    heartbeat_beat(name="queue")
    return now.isoformat()


def evaluate_slas() -> dict[str, int]:
    return sla_evaluate()


def prune_task_results() -> int:
    """Keep the newest Q_SUCCESS_KEEP successful task results (scheduled every 5 minutes)."""
    return task_results_prune()
