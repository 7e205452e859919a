"""The rep workspace page's "why" and "why not": the workspace's firings with what made each fire, and the
ones a cap, quiet hours or an experiment's holdout held, in words; only on the rep's own workspaces. One
browser test looks at the page in Debian's Chromium and keeps a screenshot (artifacts/browser/)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.urls import reverse

from tests.browser import BROWSER_MARKS
from tests.triggers.conftest import T0, event
from triggers.experiments import RUNNING_CACHE_KEY, arm_for, experiment_save, experiment_start
from triggers.models import Experiment, Firing, Trigger
from triggers.services import ENABLED_CACHE_KEY, trigger_save, triggers_evaluate

STARTED = {"kind": "event", "event": {"type": "trial.started"}}
LIMIT = {"kind": "event", "event": {"type": "plan.limit_reached"}}
GOAL = {"goal": {"event": {"type": "subscription.converted"}}, "within_seconds": 7 * 86400}


def trigger(key: str, name: str, when: dict, **fields) -> Trigger:
    fields.setdefault("actions", [{"channel": "email", "template": "welcome"}])
    return trigger_save(trigger=Trigger(key=key, name=name, when=when, **fields))


def evaluate(workspace: str, type_: str, at, *keys: str) -> list[Firing]:
    triggers = list(Trigger.objects.filter(key__in=keys))
    return triggers_evaluate(
        workspace_key=workspace, new_events=[event(workspace, type_, at)], now=at, triggers=triggers
    )


def salt_with(workspace: str, arm: str) -> str:
    """A salt that puts this workspace in this arm (the split is a pure function of salt and workspace)."""
    arms = [{"key": "holdout", "weight": 50}, {"key": "control", "weight": 50}]
    return next(
        s for s in (f"s{i}" for i in range(100)) if arm_for(Experiment(arms=arms, salt=s), workspace)[0].key == arm
    )


@pytest.fixture
def firings(world, settings) -> dict[str, Firing]:
    """On ann's workspace: one fired, one held by the workspace cap, one held out, one deferred by quiet hours."""
    cache.delete(ENABLED_CACHE_KEY), cache.delete(RUNNING_CACHE_KEY)
    settings.TRIGGERS_PERSON_CAP = None
    settings.TRIGGERS_QUIET_HOURS = None
    settings.TRIGGERS_WORKSPACE_CAP = (1, 86400)
    trigger("welcome_t", "Welcome", STARTED, priority=5)
    trigger("nudge_t", "Upgrade nudge", STARTED, priority=1)
    tips = trigger("tips_t", "Plan limit tips", LIMIT, follow_up=GOAL)
    trigger("evening_t", "Evening digest", LIMIT)
    arms = [{"key": "holdout", "weight": 50}, {"key": "control", "weight": 50}]
    experiment = Experiment(
        trigger=tips, key="tips-holdout", name="Tips", arms=arms, salt=salt_with("ws_ann", "holdout")
    )
    experiment_start(experiment=experiment_save(experiment=experiment), now=T0 - timedelta(days=1))

    fired, capped = evaluate("ws_ann", "trial.started", T0, "welcome_t", "nudge_t")
    [held] = evaluate("ws_ann", "plan.limit_reached", T0 + timedelta(days=2), "tips_t")
    settings.TRIGGERS_QUIET_HOURS = ("21:00", "08:00")
    [deferred] = evaluate("ws_ann", "plan.limit_reached", T0 + timedelta(days=3, hours=11), "evening_t")
    cache.delete(RUNNING_CACHE_KEY)
    return {"fired": fired, "capped": capped, "held": held, "deferred": deferred}


@pytest.mark.django_db
def test_the_rep_sees_each_firing_with_its_why_and_the_held_ones_with_why_not(client, world, firings):
    # given: the four decisions were what the engine made
    statuses = {name: (f.status, f.reason) for name, f in firings.items()}
    assert statuses == {
        "fired": ("fired", ""), "capped": ("suppressed", "cap_workspace"),
        "held": ("suppressed", "holdout"), "deferred": ("deferred", "quiet_hours"),
    }  # fmt: skip
    client.force_login(world.ann)

    # when
    response = client.get(reverse("reps:workspace", args=["ws_ann"]))

    # then
    shown = {row.trigger: row for row in response.context["firings"]}
    assert shown["Welcome"].outcome == "Fired"
    assert shown["Welcome"].why.startswith("trial.started at 2026-11-23 12:00 UTC")
    assert shown["Welcome"].actions == [("email", "pending")]
    assert shown["Upgrade nudge"].why_not == (
        "Held by the cap on messages to this workspace across triggers: 1 of 1 already within 1 day; "
        "higher-priority triggers go first."
    )
    assert shown["Plan limit tips"].outcome == "Held back (experiment)"
    assert "holdout of the experiment tips-holdout (50% of workspaces)" in shown["Plan limit tips"].why_not
    assert "arm holdout" in shown["Plan limit tips"].why and shown["Plan limit tips"].goal == "Pending"
    assert shown["Evening digest"].why_not == "Quiet hours in UTC: it goes out at 2026-11-27 08:00 UTC."
    page = response.content.decode()
    for words in ("Why not", "Held back (experiment)", "Deferred (quiet hours)", "Quiet hours in UTC"):
        assert words in page


@pytest.mark.django_db
def test_another_rep_cannot_see_the_workspace_or_its_firings(client, world, firings):
    client.force_login(world.bo)

    assert client.get(reverse("reps:workspace", args=["ws_ann"])).status_code == 404


@pytest.mark.django_db
def test_a_workspace_with_no_firing_says_so(client, world):
    client.force_login(world.ann)

    response = client.get(reverse("reps:workspace", args=["ws_ann"]))

    assert "No trigger has fired or been held back for this workspace." in response.content.decode()


def browser_test(test):
    for mark in BROWSER_MARKS:
        test = mark(test)
    return test


@browser_test
def test_the_why_not_section_in_chromium(browser, site, world, firings):  # noqa: F811
    from selenium.webdriver.common.by import By

    from tests.reps.test_browser import ARTIFACTS, csp_violations, full_page_screenshot, log_in

    log_in(browser, site, "ann")
    browser.get(f"{site}/reps/workspaces/ws_ann/")
    table = browser.find_element(By.ID, "firings")
    browser.execute_script("arguments[0].scrollIntoView()", table)

    rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
    assert len(rows) == 4
    assert "Held back (experiment)" in table.text and "Quiet hours in UTC" in table.text
    assert csp_violations(browser) == []
    full_page_screenshot(browser, ARTIFACTS / "why-not-workspace.png", max_height=4000)


from tests.reps.test_browser import browser, plain_http_server, site  # noqa: E402, F401 (fixtures)
