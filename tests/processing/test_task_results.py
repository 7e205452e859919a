"""Successful task results: django-q2 saves them without pruning; the scheduled prune keeps the newest."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone
from django_q.models import Schedule, Task

from processing.housekeeping import task_results_prune

pytestmark = pytest.mark.django_db


def _task(n: int, *, success: bool = True) -> Task:
    stopped = timezone.now() - timedelta(minutes=100 - n)
    return Task.objects.create(
        id=f"{n:032x}", name=f"task-{n}", func="failures.tasks.heartbeat", started=stopped, stopped=stopped,
        success=success,
    )  # fmt: skip


def test_cluster_saves_without_pruning_on_every_save():
    """save_limit > 0 makes django-q2 lock and read every saved success per task saved."""
    assert settings.Q_CLUSTER["save_limit"] == 0


def test_prune_keeps_the_newest_successes_and_every_failure():
    tasks = [_task(n) for n in range(10)]
    failures = [_task(n, success=False) for n in range(10, 13)]
    assert task_results_prune(keep=4) == 6
    assert set(Task.objects.filter(success=True).values_list("name", flat=True)) == {t.name for t in tasks[-4:]}
    assert Task.objects.filter(success=False).count() == len(failures)
    assert task_results_prune(keep=4) == 0  # twice = once


def test_keep_minus_one_saves_nothing_and_prunes_nothing(settings):
    _task(1)
    settings.Q_SUCCESS_KEEP = -1
    assert task_results_prune() == 0
    assert Task.objects.count() == 1


def test_prune_is_scheduled():
    schedule = Schedule.objects.get(name="Ops: prune task results")
    assert schedule.func == "processing.tasks.prune_task_results"
    assert schedule.repeats == -1
