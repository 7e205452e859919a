"""The demo's trigger scenario, in-process and on a travelling clock: its webhooks through the real webhook
view, every task the engine queues run as a worker would, the timers swept as the clock passes their due
times, the messages sent over real HTTP(S) to the product's webhook receiver and Zendesk (email to Django's
test outbox). Each of the four acts happens, for the right workspace, with its explanation."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core import mail
from django.core.cache import cache
from django.db import connection

from emulators.demo import (
    DEMO_TRIGGERS,
    act_of,
    daytime_zone,
    demo_acts,
    demo_definitions,
    demo_scenario,
    demo_seed,
    firing_why,
)
from tests.conftest import signed_headers
from tests.messaging.conftest import product_webhook, zendesk  # noqa: F401 (fixtures)
from triggers.models import Firing, Trigger
from triggers.services import ENABLED_CACHE_KEY
from triggers.tasks import fire_due_timers
from usage.definitions import SHIPPED, definitions_load

T0 = datetime(2026, 11, 20, 14, 0, 7, tzinfo=UTC)
RUN = "t1"


@pytest.fixture
def demo_database(db, settings) -> None:
    """The demo's database: its reps and accounts, the shipped triggers with the demo's changes."""
    settings.BEHAVIOUR_PROFILES = True
    cache.delete(ENABLED_CACHE_KEY)
    demo_seed(password="demo-test-Pa55")
    definitions_load(demo_definitions(json.loads(SHIPPED.read_text()), json.loads(DEMO_TRIGGERS.read_text())))
    Trigger.objects.exclude(key__in=json.loads(DEMO_TRIGGERS.read_text())["triggers"]).update(enabled=False)
    cache.delete(ENABLED_CACHE_KEY)


def test_the_scenario_shows_a_threshold_a_cohort_entry_a_stall_and_an_escalation_each_explained(
    demo_database,
    client,
    product_webhook,  # noqa: F811 (the fixture)
    zendesk,  # noqa: F811
):
    acts = {act.what: act for act in demo_acts(RUN)}

    # when: the scenario arrives, and the engine works it off
    with time_machine.travel(T0, tick=False):
        for message in demo_scenario(now=T0, run=RUN):
            body = message.body_json()
            with committed():
                answer = client.post(
                    "/webhooks/provisioning/", data=body, content_type="application/json",
                    headers=signed_headers(body, msg_id=message.msg_id),
                )  # fmt: skip
            assert answer.status_code == 202, answer.content
        drain()

    # then: the threshold and the cohort entry happened at once
    threshold = fired(acts["threshold"])
    assert (threshold.explanation["count"], threshold.explanation["threshold"]) == (3, 3)
    [ticket] = zendesk.desk.with_external_id(f"firing-{threshold.pk}-ticket-0")
    assert "3 failed exports" in ticket["subject"]
    entered = fired(acts["cohort entry"])
    assert entered.explanation["cohort"] == "feature_shallow_frequent"
    [shown] = [item for item in product_webhook.received if item.payload["data"]["firing_id"] == str(entered.pk)]
    assert shown.webhook_id == f"firing-{entered.pk}-in_app-0"
    assert not Firing.objects.filter(trigger__key="integration_stalled").exists(), "the stall's minute runs"

    # when: the stall's window (60 s) passes with no successful run
    with time_machine.travel(T0 + timedelta(seconds=61), tick=False):
        with committed():
            fire_due_timers()
        drain()

    # then: the user gets the tutorial
    stall = fired(acts["stall"])
    assert stall.explanation["finish_seen"] is False and stall.explanation["within_seconds"] == 60
    [tutorial] = [m for m in mail.outbox if m.to == ["dana@northwindtraders.com"]]
    assert tutorial.extra_headers["Message-ID"].startswith(f"<firing-{stall.pk}-email-0@")

    # when: the goal's window (90 s) passes with no activity at all
    with time_machine.travel(T0 + timedelta(seconds=61 + 91), tick=False):
        with committed():
            fire_due_timers()
        drain()

    # then: a person takes over: the account's CSM by email, and a ticket
    escalation = fired(acts["escalation"])
    assert escalation.escalation_of_id == stall.pk
    assert (escalation.explanation["activity_since_firing"], escalation.recipient) == (0, f"user:{csm_of(stall)}")
    told = [m.to for m in mail.outbox if f"Escalation firing {escalation.pk}" in m.body]
    assert told == [["dee@sales.lifecycle.test"]]
    [escalated] = zendesk.desk.with_external_id(f"firing-{escalation.pk}-ticket-1")
    assert f"firing {stall.pk}" in escalated["description"]
    Firing.objects.filter(pk=stall.pk, goal=Firing.Goal.ESCALATED).get()

    # and: every one of them says why, through the API the demo reads and in the demo's words
    for firing in (threshold, entered, stall, escalation):
        assert act_of(api_firing(client, firing), tuple(acts.values())) is not None
    assert firing_why(threshold.explanation).startswith("3 matching events within 3600 s (threshold 3;")
    assert "active_days_7d 5 >= 4; features_30d 1 <= 3" in firing_why(entered.explanation)
    assert "not finished within 60 s" in firing_why(stall.explanation)
    assert f"firing {stall.pk} (stall) missed its goal" in firing_why(escalation.explanation)


def test_the_demo_definitions_are_the_shipped_triggers_enabled_with_demo_windows():
    shipped = {item["key"]: item for item in json.loads(SHIPPED.read_text())["triggers"]}
    document = demo_definitions(json.loads(SHIPPED.read_text()), json.loads(DEMO_TRIGGERS.read_text()))
    demo = {item["key"]: item for item in document["triggers"]}

    assert {act.trigger for act in demo_acts(RUN)} <= set(demo)
    assert all(item["enabled"] for item in demo.values())
    stalled = demo["integration_stalled"]
    assert (stalled["when"]["within_seconds"], stalled["follow_up"]["within_seconds"]) == (60, 90)
    assert stalled["when"]["start"] == shipped["integration_stalled"]["when"]["start"]  # the rest as shipped
    assert stalled["follow_up"]["escalate"][0] == shipped["integration_stalled"]["follow_up"]["escalate"][0]
    assert stalled["follow_up"]["escalate"][1]["channel"] == "ticket"
    assert demo["feature_education"]["actions"][0]["params"]["feature_names"]  # merged, not replaced


def test_an_overlay_naming_a_trigger_that_is_not_shipped_is_refused():
    with pytest.raises(ValueError, match=r"triggers\.no_such_trigger is not a shipped trigger"):
        demo_definitions(json.loads(SHIPPED.read_text()), {"triggers": {"no_such_trigger": {"enabled": True}}})


def test_the_scenario_customers_are_in_their_working_day_whenever_the_demo_starts():
    for minute in range(0, 24 * 60, 10):
        now = datetime(2026, 11, 20, tzinfo=UTC) + timedelta(minutes=minute)
        assert 9 <= now.astimezone(ZoneInfo(daytime_zone(now))).hour < 19, now


# --------------------------------------------------------------------------------------------- helpers
def drain() -> list[str]:
    """Run every task waiting in the ORM broker as a worker would (with its on-commit callbacks) until
    none is left; the functions run, in order."""
    from django_q.models import OrmQ
    from django_q.signing import SignedPackage

    ran = []
    for _ in range(50):
        rows = list(OrmQ.objects.order_by("pk"))
        if not rows:
            return ran
        OrmQ.objects.filter(pk__in=[row.pk for row in rows]).delete()
        for task in (SignedPackage.loads(row.payload) for row in rows):
            module, _, name = task["func"].rpartition(".")
            with committed():
                getattr(importlib.import_module(module), name)(*task["args"], **task["kwargs"])
            ran.append(task["func"])
    raise AssertionError(f"the queue never emptied: {ran[-10:]}")


@contextmanager
def committed() -> Iterator[None]:
    """Run the on-commit callbacks the block registers, as its commit would, and forget them: the test's
    transaction never commits, and a stale callback left in it would take in later work (the dispatch
    sender's one-task-per-commit ring)."""
    start = len(connection.run_on_commit)
    yield
    while len(connection.run_on_commit) > start:
        callbacks = connection.run_on_commit[start:]
        del connection.run_on_commit[start:]
        for _, callback, _ in callbacks:
            callback()


def fired(act) -> Firing:
    """The one firing of an act's trigger for its workspace (an escalation: the one escalating), fired."""
    rows = Firing.objects.filter(trigger__key=act.trigger, workspace_key=act.workspace_id)
    rows = rows.filter(escalation_of__isnull=act.what != "escalation")
    [firing] = rows
    assert firing.status == Firing.Status.FIRED, (firing.status, firing.reason, firing.explanation)
    return firing


def csm_of(firing: Firing) -> int:
    from workspaces.models import Workspace

    workspace = Workspace.objects.select_related("account").get(workspace_id=firing.workspace_key)
    return workspace.account.csm_id


def api_firing(client, firing: Firing) -> dict[str, Any]:
    """The firing as GET /api/firings/ shows it to the demo's admin."""
    from django.contrib.auth import get_user_model

    client.force_login(get_user_model().objects.get(username="admin"))
    answer = client.get("/api/firings/", {"workspace_id": firing.workspace_key, "trigger": firing.trigger.key})
    assert answer.status_code == 200, answer.content
    [found] = [row for row in answer.json()["results"] if row["id"] == str(firing.pk)]
    assert found["explanation"]["kind"] == firing.explanation["kind"]
    return found
