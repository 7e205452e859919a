"""reconcile_billing's report against localstripe: the headline counts everything that is wrong, every list
says its total, and progress shows even when Stripe has nothing."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from tests.billing.helpers import paid_workspace, stripe_subscription

pytestmark = pytest.mark.django_db


def reconcile(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("reconcile_billing", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_the_headline_counts_unknown_and_missing_subscriptions(localstripe):
    # given a subscription naming a workspace the engine does not know, and a workspace whose
    # subscription Stripe does not have, and nothing that drifted field by field
    ghost = stripe_subscription("ws_ghost")
    paid_workspace("ws_orphan", "sub_does_not_exist")
    # when
    out, _ = reconcile()
    # then the headline is not an all-clear
    assert (
        "Read 1 Stripe subscriptions; compared 1 workspaces: 2 wrong (0 drifted, 1 missing in Stripe, "
        "1 naming a workspace the engine does not know, 0 without metadata.workspace_id)."
    ) in out
    assert f"ws_ghost: Stripe subscription {ghost.id} (active)" in out
    assert "ws_orphan points at sub_does_not_exist" in out
    assert "All clear" not in out


def test_the_missing_list_says_its_total_beyond_the_examples(localstripe):
    # given seven workspaces pointing at subscriptions Stripe does not have
    for n in range(7):
        paid_workspace(f"ws_gone_{n}", f"sub_gone_{n}")
    # when
    out, _ = reconcile()
    # then five are listed, and the total and the rest are said
    assert "7 workspace(s) point at a subscription Stripe does not have (missing in Stripe):" in out
    assert sum("points at sub_gone_" in line for line in out.splitlines()) == 5
    assert "… and 2 more (--show 7 lists them all)" in out
    listed, _ = reconcile("--show", "7")
    assert sum("points at sub_gone_" in line for line in listed.splitlines()) == 7


def test_progress_shows_when_nothing_is_read(localstripe):
    # given an empty Stripe and an engine without workspaces
    # when
    out, err = reconcile()
    # then progress still says what was read and compared, and the report is an all-clear
    assert "0/~0 Stripe subscriptions read, ETA unknown" in err
    assert "0/0 workspaces compared, ETA unknown" in err
    assert "compared 0 workspaces: 0 wrong" in out
    assert "All clear: Stripe and the engine agree on every subscription." in out


def test_progress_shows_the_comparison_with_an_eta(localstripe):
    sub = stripe_subscription("ws_cmp")
    paid_workspace("ws_cmp", sub.id)
    _, err = reconcile()
    assert "1/~1 Stripe subscriptions read, ETA 0s" in err
    assert "1/1 workspaces compared, ETA 0s" in err
