"""The demo's people and companies (an admin, three reps, a CSM, the accounts they already own) and its trigger
scenario (a threshold, a cohort entry, a stall and its escalation, happening while you watch).

Only `make demo` uses this (on its own database). Trials from the accounts' domains route to the
owning rep; the rest go by territory rules or round robin among the reps. The scenario's triggers are the
shipped ones, enabled with demo-scaled windows (`demo_triggers.json`); its webhooks are a pure function of
the time and the run (`demo_scenario`), sent by `manage.py demo_scenario`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser, Group
from django.db import transaction

from alerts.models import Rep
from emulators.simulate import EXISTING_ACCOUNTS, SimulatedMessage
from usage.definitions import SHIPPED
from workspaces.models import Account

ADMIN_USERNAME = "admin"
REPS_GROUP = "Reps"  # DESIGN.md "Roles"
#: (username, first name, last name, alert delivery)
DEMO_REPS = (
    ("ann", "Ann", "Fischer", Rep.Delivery.INSTANT),
    ("bo", "Bo", "Lindqvist", Rep.Delivery.INSTANT),
    ("cy", "Cy", "Okafor", Rep.Delivery.DIGEST),
)
EMAIL_DOMAIN = "sales.lifecycle.test"
#: The customer success manager of every seeded account: triggers for the CSM (escalations) reach her by
#: email. No login: the rep pages are the reps'.
DEMO_CSM = ("dee", "Dee", "Mensah")


@dataclass(frozen=True)
class DemoLogins:
    admin: str
    reps: tuple[str, ...]
    password: str


def _user(username: str, *, password: str, first_name: str = "", last_name: str = "") -> AbstractUser:
    user, _ = get_user_model().objects.get_or_create(username=username)
    user.first_name, user.last_name = first_name, last_name
    user.email = f"{username}@{EMAIL_DOMAIN}"
    user.is_active = True
    user.set_password(password)
    user.save()
    return user


@transaction.atomic
def demo_seed(*, password: str) -> DemoLogins:
    """Create (or reset) the demo's users and the accounts they own; every login gets `password`."""
    admin = _user(ADMIN_USERNAME, password=password, first_name="Avery", last_name="Admin")
    admin.is_staff = admin.is_superuser = True
    admin.save(update_fields=["is_staff", "is_superuser"])
    reps_group, _ = Group.objects.get_or_create(name=REPS_GROUP)
    reps = []
    for username, first, last, delivery in DEMO_REPS:
        user = _user(username, password=password, first_name=first, last_name=last)
        user.groups.add(reps_group)
        Rep.objects.update_or_create(user=user, defaults={"active": True, "delivery": delivery})
        reps.append(user)
    username, first, last = DEMO_CSM
    csm = _user(username, password=password, first_name=first, last_name=last)
    csm.set_unusable_password()
    csm.save(update_fields=["password"])
    for index, (name, domain) in enumerate(EXISTING_ACCOUNTS):
        Account.objects.update_or_create(
            domain=domain, defaults={"name": name, "owner": reps[index % len(reps)], "csm": csm}
        )
    return DemoLogins(admin=ADMIN_USERNAME, reps=tuple(user.username for user in reps), password=password)


# --- the trigger scenario ------------------------------------------------------------------------------
#: The demo's changes to the shipped triggers (enabled, windows scaled to minutes).
DEMO_TRIGGERS = Path(__file__).resolve().parent / "demo_triggers.json"
#: Zones spread round the world: one of them is always in its working day, so quiet hours (21:00-08:00 in
#: the customer's zone) never hold the scenario's customer messages back.
DAYTIME_ZONES = (
    "Pacific/Auckland", "Asia/Tokyo", "Asia/Kolkata", "Europe/Berlin", "America/New_York", "America/Los_Angeles",
    "Pacific/Honolulu",
)  # fmt: skip


@dataclass(frozen=True)
class Act:
    """One thing the scenario makes happen: what, to which workspace, through which trigger, and what the
    watcher should see (the channel its message goes out on)."""

    what: str
    workspace_id: str
    trigger: str
    channel: str
    expect: str


def demo_definitions(shipped: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """The shipped triggers the overlay names, with its changes merged in (objects key by key, lists item by
    item with extra items added), as a definitions document `behaviour_definitions load` takes.

    Raises ValueError naming a trigger the overlay changes that is not shipped.
    """
    shipped_triggers = {item["key"]: item for item in shipped.get("triggers", [])}
    unknown = sorted(set(overlay["triggers"]) - set(shipped_triggers))
    if unknown:
        raise ValueError(f"{DEMO_TRIGGERS.name}: triggers.{unknown[0]} is not a shipped trigger")
    triggers = [_merged(shipped_triggers[key], changes) for key, changes in overlay["triggers"].items()]
    return {"format": shipped["format"], "triggers": triggers}


def _merged(base: Any, change: Any) -> Any:
    if isinstance(base, dict) and isinstance(change, dict):
        return {**base, **{key: _merged(base.get(key), value) for key, value in change.items()}}
    if isinstance(base, list) and isinstance(change, list):
        return (
            [_merged(old, new) for old, new in zip(base, change, strict=False)]
            + base[len(change) :]
            + change[len(base) :]
        )
    return change


def daytime_zone(now: datetime) -> str:
    """The first of DAYTIME_ZONES where it is between 09:00 and 19:00 now."""
    return next(name for name in DAYTIME_ZONES if 9 <= now.astimezone(ZoneInfo(name)).hour < 19)


def demo_acts(run: str) -> tuple[Act, ...]:
    """The scenario's acts for one demo run (`run` makes its workspace ids new on every start)."""
    return (
        Act("threshold", f"demo-exports-{run}", "export_failures_triage", "ticket",
            "three failed exports within an hour -> a triage ticket in Zendesk, at once"),
        Act("cohort entry", f"demo-cohort-{run}", "feature_education", "in_app",
            "5 of the last 7 days in the product, one feature -> feature_shallow_frequent -> an in-app message"),
        Act("stall", f"demo-stall-{run}", "integration_stalled", "email",
            "a Salesforce integration run failed, none succeeded within 60 s -> a tutorial email, about a minute in"),
        Act("escalation", f"demo-stall-{run}", "integration_stalled", "ticket",
            "no successful run and no activity for 90 s after the tutorial -> the CSM (email) and a ticket"),
    )  # fmt: skip


def demo_scenario(*, now: datetime, run: str) -> list[SimulatedMessage]:
    """The scenario's webhooks, in send order: three trials on accounts the demo's reps own and its CSM
    looks after (so an escalation has a person), then the usage that makes each act happen. History lies in the past;
    the stall's failed run and the failed exports happen now, so their windows run while you watch."""
    zone, acts = daytime_zone(now), {act.what: act for act in demo_acts(run)}
    people = {
        "threshold": ("Priya", "Patel", EXISTING_ACCOUNTS[1]),
        "cohort entry": ("Kenji", "Tanaka", EXISTING_ACCOUNTS[2]),
        "stall": ("Dana", "Whitaker", EXISTING_ACCOUNTS[0]),
    }
    trials, usage = [], []
    for what, (first, last, (company, domain)) in people.items():
        workspace_id, email = acts[what].workspace_id, f"{first.lower()}@{domain}"
        started = now - timedelta(days=10 if what == "cohort entry" else 2)
        trial = {"email": email, "first_name": first, "last_name": last, "company": company, "timezone": zone,
                 "workspace_name": f"{company} ({first})", "plan": "business"}  # fmt: skip
        trials.append(_message(run, workspace_id, "trial.started", started, trial))
        for at, data in _usage_of(what, now):
            usage.append(_message(run, workspace_id, "usage.recorded", at, {"user_email": email, **data}))
    return trials + usage


def _usage_of(what: str, now: datetime) -> list[tuple[datetime, dict[str, Any]]]:
    if what == "threshold":
        return [(now - timedelta(seconds=s), {"feature": "audit.export", "product": "admin", "outcome": "error"})
                for s in (40, 25, 10)]  # fmt: skip
    if what == "cohort entry":  # one feature, five of the last seven days
        return [(now - timedelta(days=d, minutes=5), {"feature": "envelope.send", "product": "esign", "count": 4,
                 "duration_seconds": 600}) for d in range(5)]  # fmt: skip
    return [(now - timedelta(seconds=5), {"feature": "integration.salesforce", "product": "api", "outcome": "error"})]


def _message(run: str, workspace_id: str, kind: str, at: datetime, data: dict[str, Any]) -> SimulatedMessage:
    stamp = at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    body = {"type": kind, "timestamp": stamp, "data": {"workspace_id": workspace_id, **data}}
    digest = hashlib.sha256(f"{run}|{workspace_id}|{kind}|{stamp}".encode()).hexdigest()[:16]
    return SimulatedMessage(msg_id=f"msg_demo_{digest}", body=body)


def demo_definitions_write(path: Path) -> Path:
    """Write the demo's trigger definitions (the shipped triggers with DEMO_TRIGGERS' changes) to `path`."""
    document = demo_definitions(json.loads(SHIPPED.read_text()), json.loads(DEMO_TRIGGERS.read_text()))
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


# --- telling what happened --------------------------------------------------------------------------------
def firing_why(explanation: dict[str, Any]) -> str:
    """One line of a firing's explanation (GET /api/firings/, CONTRACT §6) in words."""
    kind = explanation.get("kind", "?")
    ids = ", ".join(str(pk) for pk in explanation.get("event_ids", []))
    if kind == "count":
        return (
            f"{explanation['count']} matching events within {explanation['window_seconds']} s "
            f"(threshold {explanation['threshold']}; events {ids})"
        )
    if kind == "stall":
        within = explanation["within_seconds"]
        return f"started at {explanation['started_at'][:19]} (event {ids}), not finished within {within} s"
    if kind == "cohort":
        seen = "; ".join(
            f"{leaf['metric']} {leaf['actual']} {leaf['op']} {leaf['value']}"
            for leaf in _leaves(explanation.get("why"))
        )
        return f"{explanation['change']} the cohort {explanation['cohort']}" + (f" ({seen})" if seen else "")
    if kind == "escalation":
        return (
            f"firing {explanation['firing_id']} ({explanation.get('original', {}).get('kind', '?')}) missed its goal "
            f"by {explanation['goal_due_at'][:19]} and there was no activity since: a person takes over"
        )
    return f"{kind}" + (f" (events {ids})" if ids else "")


def _leaves(tree: Any) -> list[dict[str, Any]]:
    """The metric comparisons of an explained condition (a cohort's why holds its tree under "condition")."""
    if not isinstance(tree, dict):
        return []
    if "metric" in tree:
        return [tree]
    if "condition" in tree:
        return _leaves(tree["condition"])
    return [leaf for group in ("all", "any") for node in tree.get(group, []) for leaf in _leaves(node)] + _leaves(
        tree.get("not")
    )


def act_of(firing: dict[str, Any], acts: tuple[Act, ...]) -> Act | None:
    """The scenario act a firing (as the API gives it) is: an escalation is the act of that name."""
    escalation = firing["explanation"].get("kind") == "escalation"
    return next(
        (
            act
            for act in acts
            if act.workspace_id == firing["workspace_id"]
            and act.trigger == firing["trigger"]
            and (act.what == "escalation") == escalation
        ),
        None,
    )
