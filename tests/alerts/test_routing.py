"""Routing: the account's owner, else territory rules (domains, country), else round robin; recorded."""

from __future__ import annotations

from collections import Counter

import pytest

from alerts.models import Alert, TerritoryRule
from alerts.routing import domain_country, workspace_route
from alerts.services import alert_raise
from tests.alerts.conftest import make_rep
from tests.factories import AccountFactory, WorkspaceFactory

pytestmark = pytest.mark.django_db


def test_the_account_owner_gets_it():
    owner = make_rep("olga").user
    make_rep("rita")
    account = AccountFactory(name="Acme", domain="acme.io", owner=owner)
    workspace = WorkspaceFactory(email="dana@acme.io", account=account)
    route = workspace_route(workspace=workspace)
    assert (route.user, route.routed_by) == (owner, "owner")
    assert "Acme" in route.why


def test_an_inactive_owner_falls_through_to_territory():
    owner = make_rep("olga", active=False).user
    tess = make_rep("tess")
    TerritoryRule.objects.create(name="Acme group", rep=tess, domains="acme.io, acme-labs.com")
    workspace = WorkspaceFactory(email="dana@eu.acme.io", account=AccountFactory(domain="acme.io", owner=owner))
    route = workspace_route(workspace=workspace)
    assert (route.user, route.routed_by) == (tess.user, "territory")
    assert route.why == "Domain eu.acme.io is in territory Acme group"


def test_territory_by_country_tld_and_by_priority():
    uk, de, catch = make_rep("uma"), make_rep("dirk"), make_rep("carl")
    TerritoryRule.objects.create(name="Catch-all UK", rep=catch, country="GB", priority=200)
    TerritoryRule.objects.create(name="UK", rep=uk, country="GB", priority=10)
    TerritoryRule.objects.create(name="DACH", rep=de, country="DE")
    assert workspace_route(workspace=WorkspaceFactory(email="a@shop.co.uk")).user == uk.user
    assert workspace_route(workspace=WorkspaceFactory(email="b@firma.de")).user == de.user
    route = workspace_route(workspace=WorkspaceFactory(email="c@firma.fr"))
    assert route.routed_by == "round_robin"


def test_domain_country():
    assert domain_country("acme.co.uk") == "GB"
    assert domain_country("firma.de") == "DE"
    assert domain_country("acme.io") == "IO"
    assert domain_country("acme.com") == ""


def test_round_robin_takes_turns_among_active_reps_only():
    reps = [make_rep(name) for name in ("ann", "ben", "cat")]
    make_rep("dormant", active=False)
    got = [workspace_route(workspace=WorkspaceFactory(email=f"p{i}@gmail.com")).user for i in range(6)]
    assert got == [rep.user for rep in reps] * 2


def test_no_rep_at_all_is_recorded_as_unrouted():
    route = workspace_route(workspace=WorkspaceFactory(email="p@gmail.com"))
    assert route.user is None and route.routed_by == "unrouted"


def test_the_route_is_recorded_on_the_alert():
    rep = make_rep("ann")
    workspace = WorkspaceFactory(email="p@gmail.com")
    alert, _ = alert_raise(
        rule="trial_started", dedupe_key="k1", title="t", reason="r", audience="rep", workspace=workspace
    )
    alert.refresh_from_db()
    assert alert.recipient == rep.user
    assert alert.routed_by == Alert.RoutedBy.ROUND_ROBIN
    assert alert.routing == "Round robin among 1 active reps"
    assert alert.workspace_key == workspace.workspace_id


def test_a_duplicate_alert_does_not_advance_the_round_robin():
    reps = [make_rep(name) for name in ("ann", "ben")]
    first, second = WorkspaceFactory(email="p@gmail.com"), WorkspaceFactory(email="q@gmail.com")
    for key, workspace in (("k1", first), ("k1", first), ("k1", first), ("k2", second)):
        alert_raise(rule="trial_started", dedupe_key=key, title="t", reason="r", audience="rep", workspace=workspace)
    assert Counter(Alert.objects.values_list("recipient__username", flat=True)) == {
        reps[0].user.username: 1,
        reps[1].user.username: 1,
    }


def raise_for(workspace, key: str) -> Alert:
    alert, _ = alert_raise(
        rule="trial_started", dedupe_key=key, title="t", reason="r", audience="rep", workspace=workspace
    )
    alert.refresh_from_db()
    return alert


def test_ownership_is_sticky_every_alert_of_a_customer_goes_to_its_owner():
    """Round robin chose ann for the trial; the conversion went to cy. Now one customer, one owner."""
    ann, _, _ = (make_rep(name) for name in ("ann", "bo", "cy"))
    workspace = WorkspaceFactory(email="kenji@gmail.com")

    trial, conversion, churn = (raise_for(workspace, key) for key in ("trial", "converted", "churned"))

    assert {trial.recipient, conversion.recipient, churn.recipient} == {ann.user}
    assert (trial.routed_by, conversion.routed_by) == ("round_robin", "owner")
    assert conversion.routing.startswith("Owner of this customer")
    workspace.refresh_from_db()
    assert workspace.owner == ann.user and workspace.owner_since is not None
    assert workspace.owner_why == "Round robin among 3 active reps"


def test_colleagues_on_one_account_share_its_owner():
    make_rep("ann")
    bo = make_rep("bo")
    account = AccountFactory(name="Acme", domain="acme.io")
    raise_for(WorkspaceFactory(email="a@gmail.com"), "other")  # ann's turn goes elsewhere
    first = raise_for(WorkspaceFactory(email="dana@acme.io", account=account), "first")
    colleague = raise_for(WorkspaceFactory(email="lee@acme.io", account=account), "colleague")
    assert first.recipient == colleague.recipient == bo.user
    assert colleague.routing.startswith("Owner of this account's other workspaces")


def test_the_account_owner_in_salesforce_overrides_the_kept_owner():
    ann, olga = make_rep("ann"), make_rep("olga")
    account = AccountFactory(name="Acme", domain="acme.io")
    workspace = WorkspaceFactory(email="dana@acme.io", account=account)
    assert raise_for(workspace, "k1").recipient == ann.user
    account.owner = olga.user
    account.save()
    workspace.refresh_from_db()
    assert raise_for(workspace, "k2").recipient == olga.user


def test_an_owner_who_left_is_replaced_once_and_the_new_one_kept():
    ann, bo = make_rep("ann"), make_rep("bo")
    workspace = WorkspaceFactory(email="kenji@gmail.com")
    assert raise_for(workspace, "k1").recipient == ann.user
    ann.active = False
    ann.save()
    workspace.refresh_from_db()
    assert raise_for(workspace, "k2").recipient == bo.user
    workspace.refresh_from_db()
    assert raise_for(workspace, "k3").recipient == bo.user
    assert workspace.owner == bo.user
