"""Today's workspace alert rules as shipped triggers of the trigger engine (DESIGN: one engine, not two).

Each rule of `alerts.rules.WORKSPACE_RULES` is a trigger whose `when` is `{"kind": "alert_rule", "rule": key}`
and whose one action is the `rep_alert` channel: the engine decides (a `triggers.Firing`, unique per trigger,
workspace and occurrence, explained by the rule's evidence; enabled or not; versioned) and the action raises
the alert as before (`alerts.services.rep_alert_act`: the same dedupe key, routing and deliveries).

The rules still run where they ran — after the processing run's commit and on the schedule
(`alerts.services.workspaces_alerts_evaluate`), never inside the run, so a rule cannot fail processing: the
kind is registered as decided in a pass of its own (`triggers.when.OWN_PASS`). They are transactional, so the
engine's caps and quiet hours never hold one back; a rep's own quiet hours still shape its delivery.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from alerts.configs import rule_configs, rule_facts, rule_workspace_keys
from alerts.evidence import workspaces_events
from alerts.models import Alert, Audience, RuleKey
from alerts.rules import DEFAULT_AUDIENCE, WORKSPACE_RULES
from alerts.rules import Firing as RuleFiring
from triggers.decide import Candidate
from triggers.models import Trigger
from triggers.preview import Found
from triggers.services import triggers_enabled_forget, triggers_enabled_of
from triggers.spec import Errors
from triggers.when import Context
from workspaces.models import Workspace

KIND = "alert_rule"
CHANNEL = "rep_alert"
#: Who hears of an admin rule (needs review) in the engine's terms; its alert follows the rule's audience.
ADMINS_TEAM = "lifecycle-admins"
#: Firing.occurrence's length.
MAX_OCCURRENCE = 128


def trigger_key(rule: str) -> str:
    return f"alert_{rule}"


def shipped() -> list[dict[str, Any]]:
    """The shipped rep-alert triggers, one per workspace rule, enabled: they are today's behaviour."""
    return [_shipped(rule) for rule in WORKSPACE_RULES]


def _shipped(rule: str) -> dict[str, Any]:
    admins = DEFAULT_AUDIENCE.get(rule) == Audience.ADMINS
    label = RuleKey(rule).label
    return {
        "key": trigger_key(rule),
        "name": f"{'Admin' if admins else 'Rep'} alert: {label}",
        "description": f"Raises the {label.lower()} alert (alerts/rules.py: {rule}); its audience, channels "
        "and timing are the alert rule's (Alert rules in the admin). Disable it to stop that alert.",
        "when": {"kind": KIND, "rule": rule},
        "audience": Trigger.Audience.TEAM if admins else Trigger.Audience.OWNER_REP,
        "team": ADMINS_TEAM if admins else "",
        "actions": [{"channel": CHANNEL, "template": rule}],
        "transactional": True,
        "enabled": True,
    }


def rep_alert_triggers() -> dict[str, list[Trigger]]:
    """The enabled rep-alert triggers by rule, from the engine's cache (a processing task reads no table)."""
    by_rule: dict[str, list[Trigger]] = {}
    for trigger in triggers_enabled_of(KIND):
        by_rule.setdefault(trigger.when["rule"], []).append(trigger)
    return by_rule


def rule_occurrence(firing: RuleFiring, workspace_key: str) -> str:
    """What happened, named by the rule's window: its dedupe key without the workspace (the firing's own
    column), e.g. `trial_expiring:20261211:7d`; hashed when longer than the column."""
    window = firing.dedupe_key.removeprefix(f"{firing.rule}:{workspace_key}:")
    occurrence = f"{firing.rule}:{window}"
    if len(occurrence) > MAX_OCCURRENCE:
        occurrence = f"{firing.rule}:{hashlib.sha256(firing.dedupe_key.encode()).hexdigest()}"
    return occurrence


def rule_candidate(trigger: Trigger, workspace_key: str, firing: RuleFiring) -> Candidate:
    """The rule's firing as the engine's candidate; its explanation is everything the alert is made of."""
    return Candidate(
        trigger=trigger,
        workspace_key=workspace_key,
        occurrence=rule_occurrence(firing, workspace_key),
        explanation={
            "kind": KIND,
            "rule": firing.rule,
            "dedupe_key": firing.dedupe_key,
            "title": firing.title,
            "reason": firing.reason,
            "event_ids": list(firing.event_ids),  # the inbox's ids (webhook-id), as in the alert's context
            "values": firing.values,
        },
    )


def when_alert_rule(trigger: Trigger, context: Context) -> list[Candidate]:
    """The `alert_rule` kind read by the engine's own callers (the alerts' pass builds the same candidates
    for many workspaces at once): the rule's firing for the workspace now, its evidence read for it."""
    rule, workspace = trigger.when["rule"], context.workspace
    configs = rule_configs()
    if workspace is None or not configs[rule].enabled:
        return []
    events = workspaces_events(workspace_keys=[context.workspace_key]).get(context.workspace_key, [])
    firing = WORKSPACE_RULES[rule](rule_facts(workspace, context.now, configs, events))
    if firing is None or Alert.objects.filter(dedupe_key=firing.dedupe_key).exists():  # raised already
        return []
    return [rule_candidate(trigger, context.workspace_key, firing)]


def alert_rule_preview(trigger: Trigger, now: datetime, lookback: timedelta, limit: int) -> Found:
    """The admin's dry run of a rep-alert trigger: its rule over the workspaces the alerts' passes would look
    at now (changed within the look-back; trials near or just past expiry), the first `limit` of them."""
    keys = sorted(rule_workspace_keys(now=now, configs=rule_configs(), changed_since=now - lookback))
    rows = Workspace.objects.select_related("account__owner", "owner", "lead").filter(workspace_id__in=keys[:limit])
    candidates = [
        candidate
        for workspace in rows.order_by("workspace_id")
        for candidate in when_alert_rule(trigger, Context(workspace.workspace_id, workspace, (), (), now))
    ]
    return Found(candidates=candidates, keys=keys[:limit], more=len(keys) > limit)


def when_alert_rule_errors(when: dict, errors: Errors, event_types: frozenset[str] | None) -> set[str]:
    """`{"kind": "alert_rule", "rule": key}`: one of the workspace rules."""
    if when.get("rule") not in WORKSPACE_RULES:
        errors.setdefault("when.rule", []).append(f"Expected one of {', '.join(WORKSPACE_RULES)}.")
    return {"rule"}


def rep_alert_triggers_ensure(sender: Any = None, *, apps: Any = None, using: str = "default", **kwargs: Any) -> int:
    """post_migrate: every shipped rep-alert trigger exists (migration 0011 made them; a test database's flush
    empties the table and then sends post_migrate, as it does for permissions). One that exists is never
    changed: an admin's edits and its enabled flag stay. Returns how many were created."""
    try:
        model = apps.get_model("triggers", "Trigger") if apps is not None else Trigger
        alert = apps.get_model("alerts", "Alert") if apps is not None else Alert
    except LookupError:  # migrated back to before the engine
        return 0
    if "firing" not in {field.name for field in alert._meta.get_fields()}:  # migrated back to before 0011
        return 0
    existing = set(model.objects.using(using).values_list("key", flat=True))
    missing = [model(**item) for item in shipped() if item["key"] not in existing]
    model.objects.using(using).bulk_create(missing, ignore_conflicts=True)
    triggers_enabled_forget()  # the cache may hold a flushed table's rows
    return len(missing)
