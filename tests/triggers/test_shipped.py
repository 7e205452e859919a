"""The shipped triggers: installed disabled by migrate, valid, loadable again without change, and — once an
admin turns one on — each fires on real behaviour (the simulator's personas rolled up) with its message
rendered from real data: the workspace's name, the metric values its cohort was entered on, the events."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.db import transaction
from django.template.loader import get_template
from django.test import override_settings

from emulators.personas import PERSONAS, persona_bodies
from events.models import Event
from messaging.delivery import dispatch_send
from messaging.models import Dispatch
from tests.factories import AccountFactory, WorkspaceFactory
from tests.triggers.conftest import event
from triggers import audience
from triggers.audience import Recipient
from triggers.models import Firing, Trigger
from triggers.services import trigger_save, triggers_evaluate
from triggers.timers import timers_fire_due
from usage.definitions import definitions_load, definitions_validate, shipped_document
from usage.models import Cohort
from usage.rollups import usage_rollup
from usage.services import behaviour_refresh

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 24, 11, 0, tzinfo=UTC)  # a Tuesday, outside quiet hours in UTC
SHIPPED = {
    "feature_education", "upgrade_call", "at_risk_retention", "at_risk_cs_outreach", "cross_sell",
    "partner_success_track", "integration_stalled", "export_failures_triage", "integration_next_step",
}  # fmt: skip
PERSONA = {persona.name: persona for persona in PERSONAS}


@pytest.fixture(autouse=True)
def shipped(settings) -> None:
    """The shipped definitions (a transactional test elsewhere may have flushed them), no caps or quiet
    hours unless a test asks, and one CSM stand-in for every workspace (the personas' accounts have no CSM set)."""
    if not Cohort.objects.exists() or not Trigger.objects.filter(key__in=SHIPPED).exists():
        definitions_load(shipped_document())
    settings.SALESFORCE_SYNC = "dry_run"
    audience.audience_register("csm", lambda ws, email, team: Recipient(key="email:cs@engine.example",
                                                                        address="cs@engine.example"))  # fmt: skip
    yield
    audience._resolvers.pop("csm", None)


def turn_on(*keys: str) -> list[Trigger]:
    """An admin enables shipped triggers (a new version each: enabling changes behaviour)."""
    turned = []
    for trigger in Trigger.objects.filter(key__in=keys):
        trigger.enabled = True
        turned.append(trigger_save(trigger=trigger))
    return turned


def persona_workspace(persona: str, key: str, seed: int, **fields) -> str:
    """A workspace with 40 days of its persona's usage (rolled up as received), ending now."""
    WorkspaceFactory(workspace_id=key, trial_started_at=NOW - timedelta(days=60), **fields)
    rng = random.Random(seed)
    users = [f"{name}@acme.io" for name in ("dana", "lee", "sam")]
    for n, body in enumerate(persona_bodies(rng, PERSONA[persona], workspace_id=key, users=users,
                                            start=NOW - timedelta(days=40), end=NOW)):  # fmt: skip
        Event.objects.create(
            source=Event.Source.PROVISIONING, external_id=f"msg_{key}_{n}", type=body["type"],
            occurred_at=body["timestamp"], workspace_key=key, status=Event.Status.NEW,
            payload={"type": body["type"], "timestamp": body["timestamp"].isoformat(), "data": body["data"]},
        )  # fmt: skip
    with override_settings(BEHAVIOUR_PROFILES=False):
        while usage_rollup():
            pass
    return key


def enter(key: str, *trigger_keys: str) -> dict[str, Firing]:
    """The behaviour refresh and the engine in one transaction, as the processing run calls them."""
    with transaction.atomic():
        changes = behaviour_refresh(workspace_keys=[key], now=NOW)
        triggers = list(Trigger.objects.filter(key__in=trigger_keys, enabled=True))
        firings = triggers_evaluate(workspace_key=key, new_events=[], behaviour_changes=changes, now=NOW,
                                    triggers=triggers)  # fmt: skip
    return {firing.trigger.key: firing for firing in firings}


def dispatch(firing: Firing) -> Dispatch:
    return Dispatch.objects.get(source_id=firing.pk)


# --- as shipped ---------------------------------------------------------------------------------------


def test_migrate_installs_every_shipped_trigger_disabled_and_the_file_is_valid():
    definitions_validate(shipped_document())
    shipped = {trigger.key: trigger for trigger in Trigger.objects.filter(key__in=SHIPPED)}
    assert set(shipped) == SHIPPED == {item["key"] for item in shipped_document()["triggers"]}
    assert not any(trigger.enabled for trigger in shipped.values())


def test_loading_the_shipped_file_again_changes_no_trigger():
    report = definitions_load(shipped_document())

    assert [label for label in report.created + report.new_versions + report.updated if "trigger" in label] == []


def test_every_action_of_every_shipped_trigger_has_its_templates():
    for item in shipped_document()["triggers"]:
        actions = item["actions"] + (item.get("follow_up") or {}).get("escalate", [])
        for action in actions:
            parts = ("subject.txt", "txt") + (("html",) if action["channel"] == "email" else ())
            for part in parts:
                get_template(f"triggers/{action['template']}.{part}")  # raises TemplateDoesNotExist


# --- the cohort → action table ----------------------------------------------------------------------


def test_feature_shallow_frequent_gets_in_app_feature_education_naming_its_own_use():
    turn_on("feature_education")
    key = persona_workspace("feature_shallow_frequent", "ws_shallow", 3, name="Acme design", email="dana@acme.io")

    firing = enter(key, "feature_education")["feature_education"]

    row = dispatch(firing)
    active = firing.explanation["why"]["condition"]["all"][0]["actual"]
    assert (row.channel, row.recipient, row.subject) == ("in_app", "dana@acme.io", "A few features worth a look")
    assert row.text.startswith(f"You have been in Acme design on {active} of the last 7 days, mostly for ")
    assert "Templates, signer reminders and bulk send" in row.text and "None" not in row.text
    assert firing.goal == Firing.Goal.PENDING  # a fourth feature within 14 days


def test_a_plan_limited_power_user_gets_an_upgrade_call_task_for_the_owner_rep():
    turn_on("upgrade_call")
    rep = get_user_model().objects.create_user("rita", email="rita@engine.example")
    key = persona_workspace("plan_limited_power_user", "ws_limits", 5, name="Globex", email="hank@globex.example",
                            status="paid", plan="team", account=AccountFactory(owner=rep))  # fmt: skip

    firing = enter(key, "upgrade_call")["upgrade_call"]

    row = dispatch(firing)
    metrics = {leaf["metric"]: leaf["actual"] for leaf in firing.explanation["why"]["condition"]["all"]}
    assert (row.channel, row.recipient) == ("salesforce_task", "rita@engine.example")
    assert row.subject == "Upgrade call: Globex keeps hitting its plan limits"
    assert f"- active on {metrics['active_days_30d']} days\n" in row.text
    assert f"- a plan limit reached {metrics['plan_limit_hits_30d']} times\n" in row.text
    assert "Latest limits reached:\n- " in row.text and "; cohort plan_limited_power_user, version 1)" in row.text
    assert dispatch_send(row.pk) == Dispatch.Status.SENT  # the Task's outbox row (tests/salesforce: the rest)


def test_at_risk_gets_an_in_app_retention_message_and_cs_outreach_then_an_escalation_when_activity_stops():
    turn_on("at_risk_retention", "at_risk_cs_outreach")
    key = persona_workspace("at_risk", "ws_risk", 11, name="Initech", email="bill@initech.example", status="paid",
                            plan="business")  # fmt: skip

    firings = enter(key, "at_risk_retention", "at_risk_cs_outreach")

    retention, outreach = dispatch(firings["at_risk_retention"]), dispatch(firings["at_risk_cs_outreach"])
    metrics = {}
    for leaf in firings["at_risk_cs_outreach"].explanation["why"]["condition"]["all"][:2]:
        metrics[leaf["metric"]] = leaf["actual"]
    assert (retention.channel, retention.recipient, retention.subject) == ("in_app", "bill@initech.example",
                                                                          "Can we help?")  # fmt: skip
    assert f"opened {metrics['tickets_14d']} support tickets in the last two weeks" in retention.text
    assert (outreach.channel, outreach.recipient) == ("email", "cs@engine.example")
    drop = f"{round(abs(metrics['duration_trend_14d']) * 100)}%"
    assert f"- time in the product fell by {drop} against the 14 days before" in outreach.text
    assert "Recent tickets:\n- " in outreach.text and f"fell by {drop}" in outreach.html

    # when: a week with no activity at all, and time in the product still down
    escalations = timers_fire_due(now=NOW + timedelta(days=7, minutes=1))

    # then
    [escalation] = escalations
    row = dispatch(escalation)
    assert (escalation.escalation_of, row.recipient) == (firings["at_risk_retention"], "cs@engine.example")
    assert row.subject == 'Needs a person: Initech went quiet after "At risk: in-app retention message"'
    assert "did not reach its goal (duration_trend_14d > -0.33)" in row.text
    assert f"- duration_trend_14d: {metrics['duration_trend_14d']:.2f}\n" in row.text and ": None" not in row.text


def test_a_single_product_power_user_gets_a_marketing_cross_sell_email_with_the_unsubscribe_link():
    turn_on("cross_sell")
    key = persona_workspace("multi_product_candidate", "ws_single", 7, name="Umbrella", email="al@umbrella.example",
                            first_name="Al", status="paid")  # fmt: skip

    firing = enter(key, "cross_sell")["cross_sell"]

    row = dispatch(firing)
    assert row.subject == "You get a lot out of eSign: here is what pairs with it"
    assert row.text.startswith("Hi Al,\n\nUmbrella used eSign on ")
    assert "hand the routine part to the API or the SDK" in row.text
    assert "Reply to this email and we will set up a 20-minute demo." in row.text
    assert row.data["marketing"] is True and row.data["unsubscribe_url"] in row.text
    assert dispatch_send(row.pk) == Dispatch.Status.SENT
    assert mail.outbox[-1].extra_headers["List-Unsubscribe"] == f"<{row.data['unsubscribe_url']}>"


def test_an_api_partnership_prospect_puts_the_partner_success_team_on_it():
    turn_on("partner_success_track")
    key = persona_workspace("api_partnership_prospect", "ws_api", 13, name="Hooli", email="gavin@hooli.example")

    firing = enter(key, "partner_success_track")["partner_success_track"]

    row = dispatch(firing)
    share = next(leaf["actual"] for leaf in firing.explanation["why"]["condition"]["all"]
                 if leaf["metric"] == "api_share_30d")  # fmt: skip
    assert (row.channel, firing.recipient) == ("slack", "team:partner-success")
    assert f"{round(share * 100)}% of its usage in the last 30 days went through the API" in row.text
    assert row.text.startswith("*Hooli* (ws_api) is an API partnership prospect")


# --- the behaviour examples -------------------------------------------------------------------------


def test_an_integration_stalled_48_hours_gets_its_micro_tutorial_then_the_csm_when_nothing_follows():
    turn_on("integration_stalled")
    WorkspaceFactory(workspace_id="ws_stall", name="Vandelay", email="art@vandelay.example", first_name="Art")
    started = NOW - timedelta(hours=49)
    failed = event("ws_stall", "usage.recorded", started, feature="integration.hubspot", product="api",
                   outcome="error", user_email="art@vandelay.example")  # fmt: skip
    triggers_evaluate(workspace_key="ws_stall", new_events=[failed], now=started)

    [firing] = timers_fire_due(now=NOW)

    row = dispatch(firing)
    assert row.subject == "Finish setting up HubSpot: a 3-minute guide"
    assert row.text.startswith(
        f"Hi Art,\n\nYou started connecting HubSpot to Vandelay on {started:%-d %b}, and it has not completed a "
        "successful run in the 48 hours since."
    )
    assert firing.explanation["key"] == "integration.hubspot" and firing.recipient == "email:art@vandelay.example"

    [escalation] = timers_fire_due(now=NOW + timedelta(days=3, minutes=1))
    text = dispatch(escalation).text
    assert (
        "did not reach its goal (a usage.recorded event with feature one of integration.salesforce, "
        "integration.hubspot, integration.zapier or integration.slack and outcome success)"
    ) in text
    assert f"- started HubSpot on {started:%-d %b %Y %H:%M} UTC and did not finish it within 48 hours" in text


def test_three_failed_exports_in_an_hour_open_a_triage_ticket_listing_them():
    turn_on("export_failures_triage")
    WorkspaceFactory(workspace_id="ws_export", name="Wayne", email="bruce@wayne.example", plan="business")
    fails = [event("ws_export", "usage.recorded", NOW - timedelta(minutes=m), feature="audit.export",
                   product="admin", outcome="error", user_email="lucius@wayne.example")
             for m in (50, 20, 1)]  # fmt: skip
    ok = event("ws_export", "usage.recorded", NOW - timedelta(minutes=30), feature="audit.export", outcome="success")

    [firing] = triggers_evaluate(workspace_key="ws_export", new_events=[*fails, ok], now=NOW)

    row = dispatch(firing)
    assert (row.channel, row.recipient) == ("ticket", "lucius@wayne.example")
    assert row.subject == "3 failed exports in 1 hour: Wayne"
    assert row.text.startswith("Wayne (ws_export) had 3 failed exports within 1 hour (the threshold is 3)")
    for fail in fails:
        line = (
            f"- {fail.occurred_at:%-d %b %H:%M:%S} UTC: audit.export (admin) by lucius@wayne.example [event {fail.pk}]"
        )
        assert line in row.text


def test_the_first_successful_integration_gets_the_next_step_once():
    turn_on("integration_next_step")
    WorkspaceFactory(workspace_id="ws_first", name="Stark", email="tony@stark.example", first_name="Tony")
    first = event("ws_first", "usage.recorded", NOW - timedelta(hours=2), feature="integration.salesforce",
                  outcome="success", user_email="tony@stark.example")  # fmt: skip
    again = event("ws_first", "usage.recorded", NOW, feature="integration.zapier", outcome="success")

    [firing] = triggers_evaluate(workspace_key="ws_first", new_events=[first], now=NOW - timedelta(hours=2))
    [repeat] = triggers_evaluate(workspace_key="ws_first", new_events=[again], now=NOW)

    row = dispatch(firing)
    assert row.subject == "Salesforce is connected: what to do next"
    assert row.text.startswith(f"Hi Tony,\n\nSalesforce completed its first successful run for Stark on {NOW:%-d %b}.")
    assert "Next: send one real document through it end to end" in row.text
    assert (repeat.status, repeat.reason) == (Firing.Status.SUPPRESSED, Firing.Reason.REENTRY)
