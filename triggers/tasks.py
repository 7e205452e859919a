"""django-q2 task entry points: take arguments, call the service (STYLE habit 5)."""

from __future__ import annotations

from triggers.timers import timers_sweep

BATCH = 200
MAX_BATCHES = 25


def fire_due_timers() -> int:
    """Every minute: fire what is due, a batch per transaction, at most MAX_BATCHES a run (the rest stay
    due and go next minute); returns how many firings were made. Safe beside other sweeps (SKIP LOCKED)."""
    made = 0
    for _ in range(MAX_BATCHES):
        sweep = timers_sweep(limit=BATCH)
        made += len(sweep.firings)
        if sweep.claimed < BATCH:
            break
    return made
