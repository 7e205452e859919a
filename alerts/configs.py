"""The rules' configuration (an `AlertRule` row each, edited in the admin; defaults when there is none) and
the facts a workspace rule sees: read by the evaluation pass and by the rep-alert triggers alike."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from django.conf import settings

from alerts.models import AlertRule, Audience, RuleKey
from alerts.rules import DEFAULT_AUDIENCE, DEFAULT_DAY_OFFSETS, WORKSPACE_RULES, Facts
from workspaces.lifecycle import LifecycleEvent
from workspaces.models import Workspace


def alert_rule(key: str) -> AlertRule:
    """The rule's configuration; an unsaved default when nobody configured it."""
    return AlertRule.objects.filter(key=key).first() or default_rule(key)


def default_rule(key: str) -> AlertRule:
    return AlertRule(key=key, audience=DEFAULT_AUDIENCE.get(key, Audience.REP))


def rule_configs() -> dict[str, AlertRule]:
    """Every workspace rule's configuration, in one query."""
    configured = {rule.key: rule for rule in AlertRule.objects.all()}
    return {key: configured.get(key) or default_rule(key) for key in WORKSPACE_RULES}


def rule_facts(
    workspace: Workspace, now: datetime, configs: dict[str, AlertRule], events: Sequence[LifecycleEvent] = ()
) -> Facts:
    return Facts(
        workspace=workspace,
        events=events,
        now=now,
        recent=timedelta(hours=settings.ALERT_RECENT_HOURS),
        day_offsets=configs[RuleKey.TRIAL_EXPIRING].day_offsets() or DEFAULT_DAY_OFFSETS,
    )


def rule_workspace_keys(*, now: datetime, configs: dict[str, AlertRule], changed_since: datetime) -> set[str]:
    """The workspaces the rules look at without a processing run: trials near or just past expiry (the
    largest day offset ahead, ALERT_RECENT_HOURS behind) and those changed since `changed_since`."""
    horizon = timedelta(days=max(configs[RuleKey.TRIAL_EXPIRING].day_offsets() or DEFAULT_DAY_OFFSETS))
    recent = timedelta(hours=settings.ALERT_RECENT_HOURS)
    trials = Workspace.objects.filter(
        status=Workspace.Status.TRIAL, trial_expires_at__gt=now - recent, trial_expires_at__lte=now + horizon
    )
    changed = Workspace.objects.filter(updated_at__gte=changed_since)
    return set(trials.values_list("workspace_id", flat=True)) | set(changed.values_list("workspace_id", flat=True))
