"""Raising alerts idempotently, routing them and planning their deliveries; the inbox actions.

A unique dedupe key means an alert fires once, whoever asks twice and however concurrently. The
alert, its recipient and its delivery rows are written in one transaction; sending happens after the
commit (DESIGN: side effects after commit), by a task or the every-minute schedule.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from alerts.configs import alert_rule, rule_configs, rule_facts, rule_workspace_keys
from alerts.delivery import deliveries_plan_all
from alerts.engine import rep_alert_triggers, rule_candidate
from alerts.evidence import workspaces_events
from alerts.models import Alert, AlertRule, Audience, RuleKey
from alerts.roles import user_is_alerts_admin
from alerts.routing import workspaces_route
from alerts.rules import WORKSPACE_RULES, Firing, needs_review, rules_evaluate
from alerts.tables import tables_cached
from failures.notices import Notice
from triggers.decide import Candidate, firings_decide
from triggers.deliveries import PlannedAction
from triggers.models import Firing as TriggerFiring
from triggers.models import Trigger
from workspaces.actors import acting_as_system
from workspaces.auditing import audit_entries_together
from workspaces.models import Workspace

logger = logging.getLogger(__name__)


def alert_raise(
    *,
    rule: str,
    dedupe_key: str,
    title: str,
    reason: str,
    workspace_key: str = "",
    audience: str = Audience.ADMINS,
    context: dict[str, Any] | None = None,
    workspace: Workspace | None = None,
    config: AlertRule | None = None,
    checked: bool = False,
    firing: TriggerFiring | None = None,
) -> tuple[Alert, bool]:
    """Create the alert unless one with this dedupe key exists; return (alert, created).

    A rep alert about a workspace is routed (owner, territory, round robin) and the choice recorded.
    Deliveries follow the rule's configuration; a disabled rule still records the alert, unsent.
    `config`: the rule's configuration when the caller has it; `checked`: the caller has just looked
    the dedupe key up (a race still ends in the unique key, below); `firing`: the trigger firing it is for.
    """
    alert = Alert(
        rule=rule,
        dedupe_key=dedupe_key,
        title=title[:255],
        reason=reason,
        workspace_key=workspace_key or (workspace.workspace_id if workspace else ""),
        workspace=workspace,
        audience=audience,
        context=context or {},
        firing=firing,
    )
    return _raise(alert, config, checked=checked)


def _raise(alert: Alert, config: AlertRule | None, *, checked: bool) -> tuple[Alert, bool]:
    """Insert the alert (routed, with its deliveries) in a savepoint; the existing one if its key is taken."""
    if not checked:
        existing = Alert.objects.filter(dedupe_key=alert.dedupe_key).first()
        if existing is not None:
            return existing, False
    try:
        with transaction.atomic():
            _insert([(alert, config or alert_rule(alert.rule))])
    except IntegrityError:
        return Alert.objects.get(dedupe_key=alert.dedupe_key), False
    return alert, True


def _insert(planned: list[tuple[Alert, AlertRule]]) -> None:
    """Route, insert and plan the deliveries of new alerts (with their rules), in the caller's transaction.

    Routed before the INSERT: one write and one audit entry each, routing included. Deliveries follow
    the rule's configuration; a disabled rule still records the alert, unsent.
    """
    with tables_cached():  # one read of the reps for the owner check, round robin and delivery
        _route([alert for alert, _ in planned])
        for alert, _ in planned:
            alert.save(force_insert=True)
        deliveries_plan_all(planned=[(alert, rule) for alert, rule in planned if rule.enabled])


def _route(alerts: list[Alert]) -> None:
    """Record each alert's recipient; a rep alert about a workspace is routed, in the list's order."""
    routed = []
    for alert in alerts:
        if alert.audience == Audience.ADMINS:
            alert.routed_by, alert.routing = Alert.RoutedBy.ADMINS, "Admin alert: Lifecycle admins"
        elif alert.workspace is None:
            alert.routed_by, alert.routing = Alert.RoutedBy.UNROUTED, "No workspace to route by"
        else:
            routed.append(alert)
    for alert, route in zip(routed, workspaces_route(workspaces=[alert.workspace for alert in routed]), strict=True):
        alert.recipient, alert.routed_by, alert.routing = route.user, route.routed_by, route.why[:255]


# --- Who sees what ------------------------------------------------------------------------------


def alerts_visible_to(user: AbstractBaseUser) -> QuerySet[Alert]:
    """Every alert for an admin; the alerts routed to them for anyone else (nothing if inactive)."""
    alerts = Alert.objects.select_related("workspace", "recipient")
    if user_is_alerts_admin(user):
        return alerts.all()
    if not (user.is_authenticated and user.is_active):
        return alerts.none()
    return alerts.filter(recipient=user)


# --- Inbox actions ------------------------------------------------------------------------------


def _for_update(alert: Alert, user: AbstractBaseUser) -> Alert:
    if not alerts_visible_to(user).filter(pk=alert.pk).exists():
        raise PermissionError(f"user {user} may not act on alert {alert.pk}")
    return Alert.objects.select_for_update().get(pk=alert.pk)


def alert_acknowledge(*, alert: Alert, user: AbstractBaseUser) -> Alert:
    """Someone has seen it and is on it. Resolved alerts stay resolved."""
    with transaction.atomic():
        locked = _for_update(alert, user)
        if locked.status in (Alert.Status.OPEN, Alert.Status.SNOOZED):
            locked.status, locked.snoozed_until = Alert.Status.ACKNOWLEDGED, None
            locked.acknowledged_at, locked.acknowledged_by = timezone.now(), user
            locked.save(update_fields=["status", "snoozed_until", "acknowledged_at", "acknowledged_by", "updated_at"])
    return locked


def alerts_acknowledge(*, alert_ids: Sequence[int], user: AbstractBaseUser) -> int:
    """Acknowledge those of `alert_ids` the user may see that are open or snoozed, one by one (the audit log
    records each); ids outside the user's alerts are skipped. Returns how many changed."""
    due = alerts_visible_to(user).filter(pk__in=alert_ids, status__in=[Alert.Status.OPEN, Alert.Status.SNOOZED])
    changed = 0
    for alert in due.order_by("pk"):
        changed += alert_acknowledge(alert=alert, user=user).acknowledged_by_id == user.pk
    return changed


def alert_snooze(*, alert: Alert, user: AbstractBaseUser, until: datetime) -> Alert:
    """Out of the inbox until `until`; the schedule reopens it then."""
    if until <= timezone.now():
        raise ValueError("until: choose a time in the future to snooze until.")
    with transaction.atomic():
        locked = _for_update(alert, user)
        if locked.status == Alert.Status.RESOLVED:
            raise ValueError("status: a resolved alert cannot be snoozed; reopen it first.")
        locked.status, locked.snoozed_until = Alert.Status.SNOOZED, until
        locked.save(update_fields=["status", "snoozed_until", "updated_at"])
    return locked


def alert_resolve(*, alert: Alert, user: AbstractBaseUser) -> Alert:
    with transaction.atomic():
        locked = _for_update(alert, user)
        if locked.status != Alert.Status.RESOLVED:
            locked.status, locked.snoozed_until = Alert.Status.RESOLVED, None
            locked.resolved_at, locked.resolved_by = timezone.now(), user
            locked.save(update_fields=["status", "snoozed_until", "resolved_at", "resolved_by", "updated_at"])
    return locked


def alert_reopen(*, alert: Alert, user: AbstractBaseUser) -> Alert:
    with transaction.atomic():
        locked = _for_update(alert, user)
        locked.status, locked.snoozed_until, locked.resolved_at, locked.resolved_by = (
            Alert.Status.OPEN,
            None,
            None,
            None,
        )
        locked.save(update_fields=["status", "snoozed_until", "resolved_at", "resolved_by", "updated_at"])
    return locked


def alerts_unsnooze_due(*, now: datetime | None = None) -> int:
    """Snoozed alerts whose time has come are open again; return how many."""
    now = now or timezone.now()
    due = list(Alert.objects.filter(status=Alert.Status.SNOOZED, snoozed_until__lte=now))
    for alert in due:  # saved one by one, not update(): the audit log records each change
        alert.status, alert.snoozed_until = Alert.Status.OPEN, None
        alert.save(update_fields=["status", "snoozed_until", "updated_at"])
    return len(due)


# --- Evaluating the rules -----------------------------------------------------------------------

#: The schedule also re-evaluates workspaces changed this recently: a hook lost to a crash between
#: the processing commit and the evaluation is made good within one schedule run.
CATCH_UP = timedelta(minutes=30)


def _unraised(firings: list[Firing], taken: dict[str, bool]) -> list[Firing]:
    """The firings whose dedupe key is not taken yet; `taken` remembers the keys already looked up."""
    unknown = [firing.dedupe_key for firing in firings if firing.dedupe_key not in taken]
    if unknown:
        found = set(Alert.objects.filter(dedupe_key__in=unknown).values_list("dedupe_key", flat=True))
        taken.update({key: key in found for key in unknown})
    return [firing for firing in firings if not taken[firing.dedupe_key]]


def workspace_alerts_evaluate(
    *, workspace_key: str, now: datetime | None = None, configs: dict[str, AlertRule] | None = None
) -> list[Alert]:
    """Raise every alert the workspace's current state calls for; return the ones created now."""
    return workspaces_alerts_evaluate(workspace_keys=[workspace_key], now=now, configs=configs)


def workspaces_alerts_evaluate(
    *, workspace_keys: Sequence[str], now: datetime | None = None, configs: dict[str, AlertRule] | None = None
) -> list[Alert]:
    """Raise every alert these workspaces' current states call for; return the ones created now.

    Each rule is a trigger of the engine (alerts/engine.py): a rule fires only while its trigger is enabled
    (and its alert rule too), and the engine decides each firing once before its alert is raised.
    Idempotent: a second call (or a concurrent one) finds the dedupe keys taken. The workspaces, the
    taken dedupe keys and (only for workspaces about to fire: they are evidence) their events are each
    read in one query for all of them; the triggers come from the engine's cache. One workspace's failure
    is logged and does not stop the others.
    """
    workspaces = list(
        Workspace.objects.select_related("account__owner", "owner", "lead").filter(
            workspace_id__in=list(workspace_keys)
        )
    )
    now = now or timezone.now()
    configs = configs or rule_configs()
    triggers = rep_alert_triggers()

    def enabled(key: str) -> bool:
        return configs[key].enabled and key in triggers

    firings = {ws.workspace_id: rules_evaluate(rule_facts(ws, now, configs), enabled) for ws in workspaces}
    taken = _reviews_answered(workspaces, firings, now, configs)  # one lookup for all taken keys too
    about_to_fire = [ws for ws in workspaces if _unraised(firings[ws.workspace_id], taken)]
    if not about_to_fire:
        return []
    evidence = workspaces_events(workspace_keys=[ws.workspace_id for ws in about_to_fire])
    due = []
    with acting_as_system(), tables_cached():  # the engine is the author; routing tables read once
        for workspace in sorted(about_to_fire, key=lambda ws: ws.workspace_id):  # the same order in every batch
            facts = rule_facts(workspace, now, configs, evidence.get(workspace.workspace_id, []))
            try:  # keys already looked up are not asked for again
                due.append((workspace, _unraised(rules_evaluate(facts, enabled), taken)))
            except Exception:
                logger.exception("evaluating alert rules for workspace %s failed", workspace.workspace_id)
        return _raise_together(due, configs, triggers, now)


_UNRESOLVED = (Alert.Status.OPEN, Alert.Status.ACKNOWLEDGED, Alert.Status.SNOOZED)


def _reviews_answered(
    workspaces: Sequence[Workspace], firings: dict[str, list[Firing]], now: datetime, configs: dict[str, AlertRule]
) -> dict[str, bool]:
    """Resolve the review alerts whose questions are gone; return which wanted dedupe keys are taken.

    Review items are often resolved by the engine itself (a conversion makes the account a free-mail
    question was waiting for): the admin's alert about them must not stay open after that. The same
    query finds the taken keys, so a batch still reads the alerts table once.
    """
    current = {}
    for ws in workspaces:
        firing = needs_review(rule_facts(ws, now, configs))
        current[ws.workspace_id] = firing.dedupe_key if firing else None
    wanted = [firing.dedupe_key for found in firings.values() for firing in found]
    found = Alert.objects.filter(
        Q(dedupe_key__in=wanted) | Q(rule=RuleKey.NEEDS_REVIEW, workspace_key__in=list(current), status__in=_UNRESOLVED)
    ).only("pk", "dedupe_key", "rule", "workspace_key", "status", "context")
    taken = dict.fromkeys(wanted, False)
    stale = []
    for alert in found:
        if alert.dedupe_key in taken:
            taken[alert.dedupe_key] = True
        unresolved_review = alert.rule == RuleKey.NEEDS_REVIEW and alert.status in _UNRESOLVED
        if unresolved_review and alert.dedupe_key != current.get(alert.workspace_key):
            stale.append(alert)
    with acting_as_system():
        for alert in stale:  # one by one, not update(): the audit log records each change
            answered = current.get(alert.workspace_key) is None
            alert.status, alert.snoozed_until, alert.resolved_at = Alert.Status.RESOLVED, None, now
            alert.context = {
                **(alert.context or {}),
                "resolved_because": "The workspace no longer needs review: its questions were answered."
                if answered
                else "Its review questions changed: a newer review alert replaces this one.",
            }
            alert.save(update_fields=["status", "snoozed_until", "resolved_at", "context", "updated_at"])
    return taken


Triggers = dict[str, list[Trigger]]
_RULE_ORDER = {key: index for index, key in enumerate(WORKSPACE_RULES)}


def _raise_together(
    due: list[tuple[Workspace, list[Firing]]], configs: dict[str, AlertRule], triggers: Triggers, now: datetime
) -> list[Alert]:
    """The firings' alerts in one transaction: the engine decides their triggers' firings together (one read
    of what it decided already, one insert of the firings), their `rep_alert` actions collect the alerts, and
    those are inserted together: one commit, one round-robin lock, one INSERT of deliveries.

    Their keys were just found free, so a race for one (IntegrityError) is rare: then, as on any other
    failure, the batch (firings included) is rolled back and raised one by one as before: each firing and
    its alert in its own transaction, a lost race answered with the winner's alert, one workspace's error
    logged without stopping the others. The alerts go in the same order in every batch (by workspace key,
    then rule), so two batches wanting the same keys wait for each other instead of deadlocking.
    """
    candidates = [candidate for ws, found in due for candidate in _candidates(ws, found, triggers)]
    if not candidates:
        return []
    workspaces = {ws.workspace_id: ws for ws, _ in due}
    try:
        with transaction.atomic(), audit_entries_together(), _raising_alerts(configs, together=True) as raising:
            firings_decide(candidates, workspaces=workspaces, now=now)
            planned = sorted(raising.planned, key=lambda pair: (pair[0].workspace_key, _RULE_ORDER[pair[0].rule]))
            if planned:
                _insert(planned)
    except Exception as exc:
        wanted = len({candidate.explanation["dedupe_key"] for candidate in candidates})
        logger.info("raising %d alert(s) together failed (%r); raising them one by one", wanted, exc)
        return [alert for ws, found in due for alert in _raise_one_by_one(ws, found, configs, triggers, now)]
    return [alert for alert, _ in planned]


def _candidates(workspace: Workspace, firings: list[Firing], triggers: Triggers) -> list[Candidate]:
    """Each rule firing as a candidate of each enabled trigger of its rule (one, as shipped)."""
    return [
        rule_candidate(trigger, workspace.workspace_id, firing)
        for firing in firings
        for trigger in triggers.get(firing.rule, ())
    ]


def _raise_one_by_one(
    workspace: Workspace, firings: list[Firing], configs: dict[str, AlertRule], triggers: Triggers, now: datetime
) -> list[Alert]:
    """The workspace's alerts each in its own transaction with its firing; an error is logged and ends only
    this workspace."""
    created = []
    try:
        for firing in firings:
            with transaction.atomic(), _raising_alerts(configs, together=False) as raising:
                candidates = _candidates(workspace, [firing], triggers)
                firings_decide(candidates, workspaces={workspace.workspace_id: workspace}, now=now)
            created += raising.raised
    except Exception:
        logger.exception("evaluating alert rules for workspace %s failed", workspace.workspace_id)
    return created


@dataclass
class _Raising:
    """The alerts the `rep_alert` actions of one evaluation raise: collected to be inserted together at the end
    of the batch's transaction (`together`), else each raised at once; the rules' configuration read once."""

    configs: dict[str, AlertRule]
    together: bool
    planned: list[tuple[Alert, AlertRule]] = field(default_factory=list)
    raised: list[Alert] = field(default_factory=list)


_raising: ContextVar[_Raising | None] = ContextVar("alerts_raising", default=None)


@contextmanager
def _raising_alerts(configs: dict[str, AlertRule], *, together: bool) -> Iterator[_Raising]:
    raising = _Raising(configs, together)
    token = _raising.set(raising)
    try:
        yield raising
    finally:
        _raising.reset(token)


def rep_alert_act(firing: TriggerFiring, action: PlannedAction, workspace: Workspace | None) -> None:
    """The `rep_alert` channel (registered at ready, triggers/actions.py), in the firing's transaction: the
    alert its rule would raise — the same dedupe key, title, reason and evidence, all kept in the firing's
    explanation — routed, with its deliveries, and naming the firing. Outside an evaluation (a deferred
    firing released by the timer sweep) it is raised at once."""
    raising = _raising.get()
    why = firing.explanation
    config = raising.configs[why["rule"]] if raising is not None else alert_rule(why["rule"])
    alert = Alert(
        rule=why["rule"],
        dedupe_key=why["dedupe_key"],
        title=why["title"][:255],
        reason=why["reason"],
        workspace_key=firing.workspace_key,
        workspace=workspace,
        audience=config.audience,
        context={"event_ids": why["event_ids"], "values": why["values"]},
        firing=firing,
    )
    if raising is not None and raising.together:
        if all(planned.dedupe_key != alert.dedupe_key for planned, _ in raising.planned):  # two triggers, one rule
            raising.planned.append((alert, config))
        return
    alert, created = _raise(alert, config, checked=raising is not None)
    if created and raising is not None:
        raising.raised.append(alert)


def workspaces_alerts_after_processing(*, workspace_keys: Sequence[str]) -> None:
    """The pipeline's hook, after its commits: alerts must never fail processing, so errors are logged.

    Whatever this misses (an error, a crash) the scheduled evaluation catches up (CATCH_UP).
    """
    if not workspace_keys:
        return
    try:
        workspaces_alerts_evaluate(workspace_keys=workspace_keys)
    except Exception:
        logger.exception("evaluating alert rules for %d workspace(s) failed", len(workspace_keys))


def alerts_evaluate_scheduled(*, now: datetime | None = None) -> dict[str, int]:
    """The schedule's pass: reopen snoozed alerts, evaluate trials near or just past expiry, and
    re-evaluate workspaces changed lately (catch-up for a lost hook)."""
    now = now or timezone.now()
    configs = rule_configs()
    keys = rule_workspace_keys(now=now, configs=configs, changed_since=now - CATCH_UP)
    with acting_as_system():
        unsnoozed = alerts_unsnooze_due(now=now)
    ordered, chunk = sorted(keys), 200
    raised = sum(
        len(workspaces_alerts_evaluate(workspace_keys=ordered[start : start + chunk], now=now, configs=configs))
        for start in range(0, len(ordered), chunk)
    )
    return {"workspaces": len(keys), "raised": raised, "unsnoozed": unsnoozed}


def alert_from_notice(notice: Notice) -> Alert:
    """The sink of failures.notices (set at app ready): a low app's notice becomes an admin alert."""
    alert, _ = alert_raise(
        rule=notice.rule,
        dedupe_key=notice.dedupe_key,
        title=notice.title,
        reason=notice.reason,
        workspace_key=notice.workspace_key,
        context=notice.context,
    )
    return alert
