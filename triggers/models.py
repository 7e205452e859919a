"""The trigger engine's rows (DESIGN.md "Behaviour model", layer 4): triggers as data, their firings and timers.

A `Trigger` says when (`when`, validated by `triggers.spec`), who, what (actions) and how often (caps,
re-entry). An `Experiment` splits a trigger's workspaces into arms by a stable hash, one of which may be
a holdout that is recorded but never sent. A `Firing` is one decision, fired or not, unique per
(trigger, workspace, occurrence), so retries, replays and concurrent workers never make two; it stores
everything it was decided on. A `Timer` is an effect due without an event (a stall, a silence, a date,
a follow-up, a deferral): a row, so a restart or a killed worker loses nothing.
"""

from __future__ import annotations

import secrets

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q


class Trigger(models.Model):
    """One trigger, edited as data; `version` goes up on every change of what it does."""

    class Audience(models.TextChoices):
        USER = "user", "The user (the event's user, else the workspace owner)"
        OWNER_REP = "owner_rep", "The owner rep"
        CSM = "csm", "The CSM"
        TEAM = "team", "A team"

    class Reentry(models.TextChoices):
        EVERY_TIME = "every_time", "Every occurrence (within the cap)"
        ONCE = "once", "Once per workspace, ever"

    key = models.SlugField(max_length=64, unique=True, help_text="Stable name used by the API and files.")
    name = models.CharField(max_length=128)
    description = models.TextField(blank=True)
    version = models.PositiveIntegerField(default=1, help_text="Goes up by one each time the trigger changes.")
    enabled = models.BooleanField(default=True)
    priority = models.IntegerField(default=0, help_text="Higher wins a capped slot over lower.")
    when = models.JSONField(help_text='What makes it fire: {"kind": "event" | "count" | …} (triggers/spec.py).')
    audience = models.CharField(max_length=16, choices=Audience.choices, default=Audience.USER)
    team = models.CharField(max_length=64, blank=True, help_text="The team, when the audience is a team.")
    actions = models.JSONField(default=list, help_text='[{"channel": "email", "template": "key", "params": {}}, …]')
    follow_up = models.JSONField(
        null=True,
        blank=True,
        help_text='{"goal": {"event": filter} | {"metric": condition}, "within_seconds", "escalate": [actions]}',
    )
    cap_seconds = models.PositiveIntegerField(
        null=True, blank=True, help_text="At most one firing per workspace within this many seconds; empty: no cap."
    )
    reentry = models.CharField(max_length=16, choices=Reentry.choices, default=Reentry.EVERY_TIME)
    transactional = models.BooleanField(default=False, help_text="Exempt from caps and quiet hours (receipts).")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    #: The fields whose change makes a new version (text alone does not).
    BEHAVIOUR_FIELDS = (
        "enabled", "priority", "when", "audience", "team", "actions", "follow_up", "cap_seconds", "reentry",
        "transactional",
    )  # fmt: skip

    class Meta:
        ordering = ["-priority", "key"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        """Every problem named by its field and path, for the admin form and the file loader."""
        from triggers.spec import trigger_errors

        errors = trigger_errors(self.as_document())
        if errors:
            by_field: dict[str, list[str]] = {}
            for path, messages in errors.items():
                name = path.split(".", 1)[0].split("[", 1)[0]
                field = name if name in {f.name for f in self._meta.fields} else "__all__"
                by_field.setdefault(field, []).extend(f"{path}: {message}" for message in messages)
            raise ValidationError(by_field)

    def as_document(self) -> dict:
        """The trigger as a definitions-file entry (what validation and versioning compare)."""
        return {"key": self.key, "name": self.name} | {name: getattr(self, name) for name in self.BEHAVIOUR_FIELDS}


def new_salt() -> str:
    """A fresh experiment salt: two experiments on one trigger split its workspaces independently."""
    return secrets.token_hex(8)


class Experiment(models.Model):
    """A trigger's experiment: arms with weights (one may be the holdout), a goal within a window.

    A workspace's arm is a pure function of (salt, workspace id) (`triggers.experiments`), so replays,
    retries and every worker put it in the same arm. `version` goes up when the arms, salt or goal change;
    each firing records the version it was assigned under, so results compare like with like.
    """

    #: The reserved arm key: a firing in it is recorded (suppressed, reason holdout) and sends nothing.
    HOLDOUT = "holdout"

    # PROTECT: a trigger with an experiment is disabled, never deleted (triggers are not deleted anyway).
    trigger = models.ForeignKey(Trigger, on_delete=models.PROTECT, related_name="experiments")
    key = models.SlugField(max_length=64, unique=True, help_text="Stable name used by results and files.")
    name = models.CharField(max_length=128)
    hypothesis = models.TextField(blank=True, help_text="What the experiment is meant to show.")
    arms = models.JSONField(
        help_text='[{"key": "holdout", "weight": 10}, {"key": "control", "weight": 90}, '
        '{"key": "short", "weight": 0, "actions": [...]}]: weights are relative shares; '
        'an arm\'s "actions" replace the trigger\'s; "holdout" sends nothing.'
    )
    salt = models.CharField(max_length=64, default=new_salt, help_text="Hashed with the workspace id to pick its arm.")
    goal = models.JSONField(
        null=True,
        blank=True,
        help_text='{"event": filter} | {"condition": metric condition}; empty: the trigger\'s follow-up goal.',
    )
    goal_within_seconds = models.PositiveIntegerField(
        null=True, blank=True, help_text="The goal's window after the firing (with a goal of its own)."
    )
    version = models.PositiveIntegerField(default=1, help_text="Goes up when the arms, salt or goal change.")
    started_at = models.DateTimeField(null=True, blank=True, help_text="Assigns arms from this time; empty: a draft.")
    stopped_at = models.DateTimeField(null=True, blank=True, help_text="Assigns no arm from this time.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    #: The fields whose change makes a new version.
    ASSIGNMENT_FIELDS = ("arms", "salt", "goal", "goal_within_seconds")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # One experiment at a time per trigger (a draft or a running one): assignment is never ambiguous.
            models.UniqueConstraint(
                fields=["trigger"],
                condition=Q(stopped_at__isnull=True),
                name="experiment_one_open_per_trigger",
                violation_error_message="This trigger already has an experiment that is not stopped: stop it first.",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        """Every problem named by its field and path (arms[1].weight: …), for the admin form."""
        from triggers.experiments import experiment_errors

        errors = experiment_errors(self)
        if errors:
            by_field: dict[str, list[str]] = {}
            for path, messages in errors.items():
                name = path.split(".", 1)[0].split("[", 1)[0]
                field = name if name in {f.name for f in self._meta.fields} else "__all__"
                by_field.setdefault(field, []).extend(f"{path}: {message}" for message in messages)
            raise ValidationError(by_field)


class Firing(models.Model):
    """One decision of a trigger about a workspace: fired, deferred or suppressed, with its "why"."""

    class Status(models.TextChoices):
        FIRED = "fired"
        DEFERRED = "deferred", "Deferred (quiet hours)"
        SUPPRESSED = "suppressed"

    class Reason(models.TextChoices):
        NONE = "", "—"
        CAP_TRIGGER = "cap_trigger", "This trigger's own cap"
        CAP_WORKSPACE = "cap_workspace", "The workspace cap across triggers"
        CAP_PERSON = "cap_person", "The person cap across triggers"
        REENTRY = "reentry", "Re-entry rule"
        QUIET_HOURS = "quiet_hours", "Quiet hours (deferred)"
        HOLDOUT = "holdout", "Experiment holdout"
        NO_RECIPIENT = "no_recipient", "Nobody to send to"

    class Goal(models.TextChoices):
        NONE = "", "No follow-up"
        PENDING = "pending"
        REACHED = "reached"
        MISSED = "missed"
        ESCALATED = "escalated"

    # PROTECT: firings are the record of what was sent and why; a trigger that has fired is disabled, not deleted.
    trigger = models.ForeignKey(Trigger, on_delete=models.PROTECT, related_name="firings")
    trigger_version = models.PositiveIntegerField()
    workspace_key = models.CharField(max_length=64)
    occurrence = models.CharField(max_length=128, help_text="What happened, stably named (event:42, stall:17, …).")
    status = models.CharField(max_length=16, choices=Status.choices)
    reason = models.CharField(max_length=16, choices=Reason.choices, blank=True, default="")
    priority = models.IntegerField(default=0)
    transactional = models.BooleanField(default=False)
    audience = models.CharField(max_length=16)
    recipient = models.CharField(max_length=254, blank=True, help_text="Who (email:…, user:…, team:…); caps count it.")
    recipient_zone = models.CharField(max_length=64, default="UTC")
    actions = models.JSONField(default=list, help_text="The planned actions, each with its channel and status.")
    explanation = models.JSONField(default=dict, help_text="Events, counts, values, thresholds, caps: the why.")
    # null: no experiment decided it (the API's "arm": null), unlike an arm named "".
    arm = models.CharField(max_length=32, null=True, blank=True, help_text="Experiment arm; holdout when held back.")  # noqa: DJ001
    # PROTECT: the experiment's results are these rows; an experiment is stopped, not deleted.
    experiment = models.ForeignKey(Experiment, null=True, blank=True, on_delete=models.PROTECT, related_name="firings")
    escalation_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="escalations"
    )
    goal = models.CharField(max_length=16, choices=Goal.choices, blank=True, default="")
    goal_due_at = models.DateTimeField(null=True, blank=True)
    goal_event_id = models.BigIntegerField(null=True, blank=True, help_text="The event that reached the goal.")
    decided_at = models.DateTimeField()
    fired_at = models.DateTimeField(null=True, blank=True, help_text="When it fired (a deferral: when it was let go).")

    class Meta:
        ordering = ["-decided_at", "-id"]
        constraints = [
            # Exactly once: the database, not a read-then-write, decides what is a repeat.
            models.UniqueConstraint(fields=["trigger", "workspace_key", "occurrence"], name="firing_unique_occurrence"),
            models.CheckConstraint(
                condition=Q(status__in=["fired", "deferred", "suppressed"]), name="firing_status_valid"
            ),
        ]
        indexes = [
            models.Index(fields=["workspace_key", "decided_at"], name="firing_workspace_decided"),
            models.Index(fields=["recipient", "decided_at"], name="firing_recipient_decided"),
            models.Index(fields=["trigger", "decided_at"], name="firing_trigger_decided"),
            # Results per arm (the experiment's FK index serves "its firings"; this one, a goal rate per arm).
            models.Index(
                fields=["experiment", "arm", "goal"],
                condition=Q(experiment__isnull=False),
                name="firing_experiment_arm",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.trigger_id} {self.workspace_key} {self.occurrence} ({self.status})"


class Timer(models.Model):
    """An effect due at a time: the sweep (`timers_fire_due`) acts on it, a new event cancels or moves it."""

    class Kind(models.TextChoices):
        STALL = "stall"
        SILENCE = "silence"
        DATE = "date", "Lifecycle date"
        FOLLOW_UP = "follow_up", "Follow-up goal"
        RELEASE = "release", "Release after quiet hours"

    class Status(models.TextChoices):
        PENDING = "pending"
        DONE = "done"
        CANCELLED = "cancelled"

    trigger = models.ForeignKey(Trigger, on_delete=models.CASCADE, related_name="timers")
    workspace_key = models.CharField(max_length=64)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    occurrence = models.CharField(max_length=128)
    due_at = models.DateTimeField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    data = models.JSONField(default=dict, help_text="What it was set from (start event, last activity, date).")
    firing = models.ForeignKey(Firing, null=True, blank=True, on_delete=models.CASCADE, related_name="timers")
    outcome = models.CharField(max_length=255, blank=True, help_text="What the sweep or an event did with it.")
    attempts = models.PositiveIntegerField(default=0, help_text="Sweeps that failed on it (each backs it off).")
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["due_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["trigger", "workspace_key", "kind", "occurrence"], name="timer_unique_occurrence"
            ),
            # A silence is one moving timer per trigger and workspace: activity moves it, never adds one.
            models.UniqueConstraint(
                fields=["trigger", "workspace_key"],
                condition=Q(kind="silence", status="pending"),
                name="timer_one_pending_silence",
            ),
        ]
        indexes = [
            # The sweep: pending timers by due time, kept small by the condition.
            models.Index(fields=["due_at"], condition=Q(status="pending"), name="timer_pending_due"),
            models.Index(fields=["workspace_key", "status"], name="timer_workspace_status"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.workspace_key} due {self.due_at:%Y-%m-%d %H:%M}"


class CapLock(models.Model):
    """One row per person or workspace whose caps are being decided: locked while a decision counts its
    slots, so two workers (two workspaces, one owner rep) cannot both take the last one."""

    key = models.CharField(max_length=300, primary_key=True)

    def __str__(self) -> str:
        return self.key
