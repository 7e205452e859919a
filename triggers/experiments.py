"""Experiments on triggers (DESIGN.md "Experiments"): which arm a workspace is in, and what that arm does.

A workspace's arm is a pure function of the experiment's salt and the workspace id (a SHA-256 bucket over
the arms' weights), so a replay, a retry and every worker put it in the same arm without storing an
assignment. The decision hook (`experiment_apply`, called by `triggers.decide` for each candidate) records
the arm on every firing of a running experiment; an arm may replace the trigger's actions; the `holdout`
arm turns what would have fired into a suppressed firing (reason `holdout`) that sends nothing but whose
goal is still tracked, so the goal rates of held-out and treated workspaces can be compared.

Which goal: the experiment's own (`goal` within `goal_within_seconds`), else the trigger's follow-up goal.
It is copied into the firing's explanation when decided, so results judge each firing by the goal it was
assigned under. A held-out firing never escalates (escalating is part of the treatment).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from triggers.models import Experiment, Firing, Trigger
from triggers.spec import Errors, actions_errors, follow_up_errors, known_channels, known_event_types

if TYPE_CHECKING:
    from triggers.decide import Candidate

#: The running experiments are cached like the enabled triggers (`triggers.services`): one cache read per
#: decision instead of a query; saving, starting or stopping one clears the entry at once and on commit.
RUNNING_CACHE_KEY = "triggers:experiments"
RUNNING_CACHE_SECONDS = 30
ARM_KEY_MAX = 32  # Firing.arm
BUCKETS = 10_000  # a weight's resolution: 0.01 %


@dataclass(frozen=True)
class Arm:
    key: str
    weight: int
    actions: list[dict[str, Any]] | None = None

    @property
    def holdout(self) -> bool:
        return self.key == Experiment.HOLDOUT


@dataclass(frozen=True)
class Assignment:
    """A workspace's arm in a running experiment, and what it puts in the firing's explanation."""

    experiment: Experiment
    arm: Arm
    bucket: int

    def explanation(self, trigger: Trigger) -> dict[str, Any]:
        goal, within = experiment_goal(self.experiment, trigger)
        return {
            "key": self.experiment.key,
            "version": self.experiment.version,
            "arm": self.arm.key,
            "bucket": self.bucket,
            "buckets": BUCKETS,
            "shares": arm_shares(self.experiment),
            "actions_replaced": self.arm.actions is not None,
            "goal": goal,
            "goal_within_seconds": within,
        }


def arms_of(experiment: Experiment) -> list[Arm]:
    """The experiment's arms as listed (the listed order fixes which buckets each arm takes)."""
    return [Arm(key=arm["key"], weight=int(arm["weight"]), actions=arm.get("actions")) for arm in experiment.arms]


def arm_shares(experiment: Experiment) -> dict[str, float]:
    """Each arm's share of workspaces, from its weight (rounded to four places)."""
    arms = arms_of(experiment)
    total = sum(arm.weight for arm in arms) or 1
    return {arm.key: round(arm.weight / total, 4) for arm in arms}


def workspace_bucket(salt: str, workspace_key: str) -> int:
    """A stable number in [0, BUCKETS) for this salt and workspace (SHA-256: even, and the same everywhere)."""
    digest = hashlib.sha256(f"{salt}:{workspace_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def arm_for(experiment: Experiment, workspace_key: str) -> tuple[Arm, int]:
    """The workspace's arm and bucket: arms take consecutive ranges of the buckets in proportion to weight."""
    arms = arms_of(experiment)
    total = sum(arm.weight for arm in arms)
    bucket = workspace_bucket(experiment.salt, workspace_key)
    point = bucket * total / BUCKETS
    edge = 0
    for arm in arms:
        edge += arm.weight
        if point < edge:
            return arm, bucket
    return arms[-1], bucket  # unreachable while the weights sum above zero (validation sees to it)


def experiment_goal(experiment: Experiment, trigger: Trigger) -> tuple[dict[str, Any] | None, int | None]:
    """The goal firings are measured against: the experiment's own, else the trigger's follow-up goal."""
    if experiment.goal:
        return experiment.goal, experiment.goal_within_seconds
    follow_up = trigger.follow_up or {}
    return follow_up.get("goal"), follow_up.get("within_seconds")


# --- running experiments and the decision hook ------------------------------------------------------------


def experiments_running(now: datetime) -> dict[int, Experiment]:
    """Trigger id → its experiment running at `now` (started, not stopped)."""
    experiments = cache.get(RUNNING_CACHE_KEY)
    if experiments is None:
        rows = Experiment.objects.filter(started_at__isnull=False, stopped_at__isnull=True)
        experiments = list(rows.select_related("trigger"))
        cache.set(RUNNING_CACHE_KEY, experiments, RUNNING_CACHE_SECONDS)
    return {e.trigger_id: e for e in experiments if e.started_at <= now}


def experiments_forget() -> None:
    """Drop the cached list now and again after the commit (as `triggers_enabled_forget`)."""
    cache.delete(RUNNING_CACHE_KEY)
    transaction.on_commit(lambda: cache.delete(RUNNING_CACHE_KEY))


def experiment_assign(trigger: Trigger, workspace_key: str, now: datetime) -> Assignment | None:
    """The workspace's arm in the trigger's running experiment, or None when it has none."""
    experiment = experiments_running(now).get(trigger.pk) if trigger.pk else None
    if experiment is None:
        return None
    arm, bucket = arm_for(experiment, workspace_key)
    return Assignment(experiment=experiment, arm=arm, bucket=bucket)


def experiment_apply(candidate: Candidate, reason: str, now: datetime) -> str:
    """The decision hook: record the candidate's arm and hold it back when it is in the holdout.

    Sets the candidate's `assignment`, its explanation's `experiment` and, for an arm with actions of its
    own, its actions; returns the suppression reason (`holdout` when the candidate would otherwise have
    fired or been deferred, else `reason` unchanged: a capped firing stays capped, with its arm recorded).
    Escalations belong to the firing they follow and are not assigned again.
    """
    if candidate.escalation_of is not None:
        return reason
    assignment = experiment_assign(candidate.trigger, candidate.workspace_key, now)
    if assignment is None:
        return reason
    candidate.assignment = assignment
    candidate.explanation = {**candidate.explanation, "experiment": assignment.explanation(candidate.trigger)}
    if assignment.arm.actions is not None and not assignment.arm.holdout:
        candidate.actions = assignment.arm.actions
    if assignment.arm.holdout and not reason:
        return Firing.Reason.HOLDOUT
    return reason


def firing_follow_up(firing: Firing) -> dict[str, Any]:
    """The follow-up a firing is settled by: the trigger's, with the goal and window its experiment
    assigned (when one did); a held-out firing's without escalation (it sends nothing, ever)."""
    follow_up = dict(firing.trigger.follow_up or {})
    experiment = (firing.explanation or {}).get("experiment") or {}
    if experiment.get("goal"):
        follow_up |= {"goal": experiment["goal"], "within_seconds": experiment["goal_within_seconds"]}
    if firing.arm == Experiment.HOLDOUT:
        follow_up.pop("escalate", None)
    return follow_up


# --- editing: validation, versions, start and stop ---------------------------------------------------------


def experiment_errors(experiment: Experiment) -> Errors:
    """Every problem of an experiment, by path (`arms[1].weight`): arms, weights, the goal, the trigger."""
    errors: Errors = {}
    if not (isinstance(experiment.key, str) and experiment.key and experiment.key == experiment.key.lower()):
        errors["key"] = ["Expected a lower-case key of letters, digits, - and _."]
    errors.update(arms_errors(experiment.arms))
    trigger = experiment.trigger if experiment.trigger_id else None
    if trigger is not None and trigger.transactional:
        errors.setdefault("trigger", []).append("A transactional trigger (a receipt) is never held back or varied.")
    errors.update(_goal_errors(experiment, trigger))
    if experiment.stopped_at and not experiment.started_at:
        errors.setdefault("stopped_at", []).append("An experiment stops after it started: set started_at first.")
    elif experiment.stopped_at and experiment.started_at and experiment.stopped_at < experiment.started_at:
        errors.setdefault("stopped_at", []).append("Expected a time after started_at.")
    return errors


def arms_errors(arms: Any) -> Errors:
    """Arms: a list of {"key", "weight", "actions"?}, unique keys, whole weights summing above zero, at least
    one arm that is not the holdout, and no actions on the holdout (it sends nothing)."""
    if not (isinstance(arms, list) and arms):
        return {"arms": ['Expected a list of arms: [{"key": "holdout", "weight": 10}, {"key": "control", …}].']}
    errors: Errors = {}
    channels = known_channels()
    for index, arm in enumerate(arms):
        errors.update(_arm_errors(arm, f"arms[{index}]", channels))
        keys = [other.get("key") for other in arms[:index] if isinstance(other, dict)]
        if isinstance(arm, dict) and arm.get("key") in keys:
            errors.setdefault(f"arms[{index}].key", []).append(f"Arm {arm['key']!r} is listed twice.")
    if not errors and sum(arm["weight"] for arm in arms) == 0:
        errors["arms"] = ["Expected weights that sum above zero."]
    if not errors and not any(arm["key"] != Experiment.HOLDOUT and arm["weight"] > 0 for arm in arms):
        errors["arms"] = ["Expected at least one arm besides the holdout with a weight above zero."]
    return errors


def _arm_errors(arm: Any, at: str, channels: tuple[str, ...]) -> Errors:
    if not isinstance(arm, dict):
        return {at: ['Expected {"key": …, "weight": …, "actions": [...]?}.']}
    errors: Errors = {}
    key = arm.get("key")
    if not (isinstance(key, str) and 0 < len(key) <= ARM_KEY_MAX and key.replace("_", "").replace("-", "").isalnum()):
        errors[f"{at}.key"] = [f"Expected a key of letters, digits, - and _ (at most {ARM_KEY_MAX})."]
    weight = arm.get("weight")
    if not (isinstance(weight, int) and not isinstance(weight, bool) and 0 <= weight <= BUCKETS):
        errors[f"{at}.weight"] = [f"Expected a whole number from 0 to {BUCKETS}."]
    if "actions" in arm and key == Experiment.HOLDOUT:
        errors[f"{at}.actions"] = ["The holdout sends nothing: it takes no actions."]
    elif "actions" in arm:
        errors.update(actions_errors(arm["actions"], f"{at}.actions", channels))
    extra = sorted(set(arm) - {"key", "weight", "actions"})
    if extra:
        errors[at] = [f"Unexpected key(s): {', '.join(extra)}."]
    return errors


def _goal_errors(experiment: Experiment, trigger: Trigger | None) -> Errors:
    """The experiment's own goal (validated as a follow-up's), or the trigger's follow-up goal."""
    if experiment.goal is None:
        if experiment.goal_within_seconds is not None:
            return {"goal_within_seconds": ["A window needs a goal of the experiment's own."]}
        if trigger is not None and not (trigger.follow_up or {}).get("goal"):
            return {"goal": ["Name a goal: the trigger has no follow-up goal to measure."]}
        return {}
    follow_up = {"goal": experiment.goal, "within_seconds": experiment.goal_within_seconds}
    errors = follow_up_errors(follow_up, known_channels(), known_event_types())
    renamed: Errors = {}
    for path, messages in errors.items():
        name = path.replace("follow_up.within_seconds", "goal_within_seconds").replace("follow_up.goal", "goal")
        renamed[name] = messages
    return renamed


def experiment_save(*, experiment: Experiment) -> Experiment:
    """Validate and save; the version goes up when the arms, salt or goal changed (results per version).

    Raises ValidationError naming each field and path.
    """
    experiment.full_clean()
    with transaction.atomic():
        stored = Experiment.objects.select_for_update().filter(pk=experiment.pk).first() if experiment.pk else None
        if stored is not None:
            changed = any(getattr(stored, name) != getattr(experiment, name) for name in Experiment.ASSIGNMENT_FIELDS)
            experiment.version = stored.version + 1 if changed else stored.version
        experiment.save()
        experiments_forget()
    return experiment


def experiment_start(*, experiment: Experiment, now: datetime | None = None) -> Experiment:
    """Start assigning arms now (a draft only; a stopped experiment is not restarted: make a new one)."""
    now = now or timezone.now()
    if experiment.started_at is not None:
        raise ValidationError({"started_at": "The experiment has already started."})
    experiment.started_at = now
    return experiment_save(experiment=experiment)


def experiment_stop(*, experiment: Experiment, now: datetime | None = None) -> Experiment:
    """Stop assigning arms now: the trigger's firings go back to its own actions, for everyone."""
    now = now or timezone.now()
    if experiment.started_at is None or experiment.stopped_at is not None:
        raise ValidationError({"stopped_at": "Only a running experiment can be stopped."})
    experiment.stopped_at = now
    return experiment_save(experiment=experiment)


def experiments_of(trigger: Trigger) -> list[Experiment]:
    """The trigger's experiments, the open one first."""
    return list(trigger.experiments.order_by(F("stopped_at").desc(nulls_first=True), "-created_at"))
