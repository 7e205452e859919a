"""People and records for the rep pages: two reps, an admin, a stranger, and workspaces of each rep."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone

from alerts.models import Alert, Rep
from alerts.roles import ADMINS_GROUP, REPS_GROUP
from tests.factories import AccountFactory, EventFactory, LeadFactory, WorkspaceFactory
from workspaces.models import Workspace

PASSWORD = "correct-horse-battery-staple-42"
#: A payload value no page may ever show to a rep: it is in the raw payload only.
PAYLOAD_SECRET = "payload-only-9f3c"


def make_user(username: str, *, groups: tuple[str, ...] = (), **fields) -> User:
    user = User.objects.create_user(username=username, password=PASSWORD, email=f"{username}@example.com", **fields)
    for name in groups:
        # The data migration made the groups, but a transactional test elsewhere may have flushed them.
        user.groups.add(Group.objects.get_or_create(name=name)[0])
    return user


def make_alert(*, workspace: Workspace, recipient: User | None, rule: str = "trial_expiring", **fields) -> Alert:
    defaults = {
        "title": f"{rule} for {workspace.workspace_id}",
        "reason": f"Because {workspace.workspace_id} did something ({rule}).",
        "audience": Alert.Audience.REP if recipient else Alert.Audience.ADMINS,
        "context": {"event_ids": ["msg_1"], "values": {"days_left": 3}},
        "routed_by": Alert.RoutedBy.OWNER if recipient else Alert.RoutedBy.ADMINS,
        "routing": "Owner of the account" if recipient else "Admin alert: Lifecycle admins",
    }
    return Alert.objects.create(
        rule=rule,
        dedupe_key=f"{rule}:{workspace.workspace_id}:{Alert.objects.count()}",
        workspace=workspace,
        workspace_key=workspace.workspace_id,
        recipient=recipient,
        **{**defaults, **fields},
    )


@dataclass
class World:
    ann: User
    bo: User
    admin: User
    stranger: User
    ws_ann: Workspace
    ws_bo: Workspace
    ws_nobody: Workspace
    alert_ann: Alert
    alert_bo: Alert
    alert_admins: Alert


@pytest.fixture
def world(db) -> World:
    """ann owns ws_ann's account (a rep by her Rep row); bo has an alert on ws_bo routed to him (a rep by group)."""
    now = timezone.now()
    ann = make_user("ann", first_name="Ann", last_name="Archer")
    Rep.objects.create(user=ann)
    bo = make_user("bo", groups=(REPS_GROUP,))
    admin = make_user("lena", groups=(ADMINS_GROUP,), is_staff=True)
    stranger = make_user("sam")

    account = AccountFactory(name="Acme", domain="acme.io", owner=ann, salesforce_id="001000000000001AAA")
    lead = LeadFactory(email="dana@acme.io", salesforce_id="00Q000000000001AAA")
    ws_ann = WorkspaceFactory(
        workspace_id="ws_ann",
        name="Acme Analytics",
        email="dana@acme.io",
        plan="team",
        account=account,
        lead=lead,
        trial_expires_at=now + timedelta(days=3),
        salesforce_id="a0X000000000001AAA",
        salesforce_state="synced",
        salesforce_synced_at=now - timedelta(minutes=5),
    )
    ws_bo = WorkspaceFactory(
        workspace_id="ws_bo",
        name="Bolt Labs",
        status=Workspace.Status.PAID,
        plan="pro",
        mrr=Decimal("297.00"),
        converted_at=now - timedelta(days=2),
    )
    ws_nobody = WorkspaceFactory(
        workspace_id="ws_nobody",
        name="Nobody Inc",
        status=Workspace.Status.CHURNED,
        mrr=Decimal("99.00"),
        churned_at=now - timedelta(days=1),
        trial_expires_at=now + timedelta(days=2),
    )
    EventFactory(
        workspace_key="ws_ann",
        type="trial.started",
        occurred_at=now - timedelta(days=27),
        status="completed",
        payload={
            "type": "trial.started",
            "timestamp": (now - timedelta(days=27)).isoformat(),
            "data": {"workspace_id": "ws_ann", "email": "dana@acme.io", "plan": "team", "note": PAYLOAD_SECRET},
        },
    )
    return World(
        ann=ann,
        bo=bo,
        admin=admin,
        stranger=stranger,
        ws_ann=ws_ann,
        ws_bo=ws_bo,
        ws_nobody=ws_nobody,
        alert_ann=make_alert(workspace=ws_ann, recipient=ann),
        alert_bo=make_alert(workspace=ws_bo, recipient=bo, rule="converted"),
        alert_admins=make_alert(workspace=ws_nobody, recipient=None, rule="needs_review"),
    )
