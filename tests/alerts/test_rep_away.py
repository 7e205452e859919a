"""A rep who is away: new alerts routed to them go to their named backup, with the reason; the customer
stays theirs. A backup who is away or inactive too leaves the alert where routing put it."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import time_machine

from alerts.models import Alert, Rep
from alerts.services import alert_raise
from tests.alerts.conftest import make_rep
from tests.factories import AccountFactory, WorkspaceFactory
from workspaces.models import Workspace

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)


def away(rep: Rep, first: date = date(2026, 12, 1), last: date = date(2026, 12, 14), backup: Rep | None = None) -> Rep:
    Rep.objects.filter(pk=rep.pk).update(away_from=first, away_until=last, backup=backup)
    rep.refresh_from_db()
    return rep


def raise_for(workspace: Workspace, key: str, audience: str = "rep") -> Alert:
    alert, _ = alert_raise(
        rule="trial_expiring", dedupe_key=key, title="t", reason="r", audience=audience, workspace=workspace
    )
    alert.refresh_from_db()
    return alert


@time_machine.travel(NOW, tick=False)
def test_an_away_owners_alerts_go_to_the_backup_and_the_customer_stays_theirs():
    olga, bea = make_rep("olga"), make_rep("bea")
    workspace = WorkspaceFactory(email="dana@gmail.com", owner=olga.user)
    away(olga, backup=bea)

    alert = raise_for(workspace, "k1")

    assert (alert.recipient, alert.routed_by) == (bea.user, Alert.RoutedBy.BACKUP)
    assert alert.routing.startswith("Backup for olga: olga is away until 2026-12-14. Owner of this customer")
    workspace.refresh_from_db()
    assert workspace.owner == olga.user, "ownership is not transferred"


@time_machine.travel(NOW, tick=False)
def test_the_account_owner_away_goes_to_the_backup_too():
    olga, bea = make_rep("olga"), make_rep("bea")
    workspace = WorkspaceFactory(email="dana@acme.io", account=AccountFactory(name="Acme", owner=olga.user))
    away(olga, backup=bea)
    alert = raise_for(workspace, "k1")
    assert alert.recipient == bea.user and "Owner of account Acme" in alert.routing


@time_machine.travel(NOW, tick=False)
def test_a_round_robin_turn_of_an_away_rep_makes_them_owner_and_the_backup_gets_the_alert():
    olga, bea = make_rep("olga"), make_rep("bea")
    away(olga, backup=bea)
    workspace = WorkspaceFactory(email="new@gmail.com")

    alert = raise_for(workspace, "k1")  # olga's turn (first by pk)

    assert alert.recipient == bea.user and "Round robin" in alert.routing
    workspace.refresh_from_db()
    assert workspace.owner == olga.user


@pytest.mark.parametrize(
    ("first", "last"), [(date(2026, 12, 8), date(2026, 12, 20)), (date(2026, 11, 20), date(2026, 12, 6))]
)
@time_machine.travel(NOW, tick=False)
def test_before_or_after_the_days_away_the_rep_gets_their_alerts(first, last):
    olga, bea = make_rep("olga"), make_rep("bea")
    away(olga, first, last, backup=bea)
    alert = raise_for(WorkspaceFactory(email="dana@gmail.com", owner=olga.user), "k1")
    assert (alert.recipient, alert.routed_by) == (olga.user, Alert.RoutedBy.OWNER)


def test_days_away_are_the_reps_local_dates():
    olga, bea = make_rep("olga", time_zone="Pacific/Auckland"), make_rep("bea")
    away(olga, date(2026, 12, 8), date(2026, 12, 8), backup=bea)
    workspace = WorkspaceFactory(email="dana@gmail.com", owner=olga.user)
    with time_machine.travel(datetime(2026, 12, 7, 12, 0, tzinfo=UTC), tick=False):  # 01:00 on the 8th in Auckland
        assert raise_for(workspace, "k1").recipient == bea.user
    with time_machine.travel(datetime(2026, 12, 8, 11, 0, tzinfo=UTC), tick=False):  # 00:00 on the 9th there
        assert raise_for(workspace, "k2").recipient == olga.user


@pytest.mark.parametrize("why", ["away", "inactive", "left"])
@time_machine.travel(NOW, tick=False)
def test_a_backup_who_cannot_cover_leaves_the_alert_with_the_owner(why):
    olga, bea = make_rep("olga"), make_rep("bea")
    if why == "away":
        away(bea)
    elif why == "inactive":
        Rep.objects.filter(pk=bea.pk).update(active=False)
    else:
        type(bea.user).objects.filter(pk=bea.user.pk).update(is_active=False)
    away(olga, backup=bea)

    alert = raise_for(WorkspaceFactory(email="dana@gmail.com", owner=olga.user), "k1")

    assert (alert.recipient, alert.routed_by) == (olga.user, Alert.RoutedBy.OWNER)
    assert alert.routing.endswith("olga is away until 2026-12-14, but their backup bea is away or inactive")


@time_machine.travel(NOW, tick=False)
def test_alerts_raised_before_the_time_away_stay_with_the_rep():
    olga, bea = make_rep("olga"), make_rep("bea")
    workspace = WorkspaceFactory(email="dana@gmail.com", owner=olga.user)
    before = raise_for(workspace, "k1")
    away(olga, backup=bea)
    before.refresh_from_db()
    assert before.recipient == olga.user


@time_machine.travel(NOW, tick=False)
def test_admin_alerts_are_not_rerouted():
    olga, bea = make_rep("olga"), make_rep("bea")
    away(olga, backup=bea)
    alert = raise_for(WorkspaceFactory(email="dana@gmail.com", owner=olga.user), "k1", audience="admins")
    assert alert.recipient is None and alert.routed_by == Alert.RoutedBy.ADMINS
