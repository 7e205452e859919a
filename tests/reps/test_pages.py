"""The rep pages past a demo (issue 21): `/`, an alert's own page, paged/sorted/filtered lists with bulk
acknowledge and CSV export, money in a reporting currency, and values a rep can read."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from alerts.exports import csv_safe
from alerts.models import Alert, Delivery, ExchangeRate
from tests.factories import EventFactory, WorkspaceFactory
from tests.reps.conftest import make_alert, make_user
from workspaces.models import Workspace


def csv_rows(response) -> list[dict[str, str]]:
    assert response["Content-Type"].startswith("text/csv")
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


# --- 3. `/` -------------------------------------------------------------------------------------


def test_root_sends_anonymous_visitors_to_the_login(client, world):
    response = client.get("/")

    assert response.status_code == 302 and response["Location"] == "/accounts/login/?next=/"


@pytest.mark.parametrize("person", ["ann", "admin"])
def test_root_takes_reps_and_lifecycle_admins_to_the_rep_pages(client, world, person):
    client.force_login(getattr(world, person))

    assert client.get("/")["Location"] == "/reps/"


def test_root_takes_staff_without_rep_pages_to_the_admin_and_hides_view_site(client, world, settings):
    settings.STAFF_TOTP_REQUIRED = False
    auditor = make_user("olga", is_staff=True)
    client.force_login(auditor)

    assert client.get("/")["Location"] == "/admin/"
    assert "View site" not in client.get("/admin/").content.decode()


def test_root_refuses_a_signed_in_user_with_no_pages(client, world):
    client.force_login(world.stranger)

    assert client.get("/").status_code == 403


def test_the_admins_view_site_leads_to_root(client, world):
    client.force_login(world.admin)

    assert '<a href="/">View site</a>' in client.get("/admin/").content.decode()


# --- 10. An alert's own page --------------------------------------------------------------------


@pytest.fixture
def evidenced(world) -> Alert:
    """A conversion alert for ws_ann naming its event, one event of another workspace, and two deliveries."""
    mine = EventFactory(
        workspace_key="ws_ann",
        external_id="evt_conv_1",
        type="subscription.converted",
        payload={"data": {"workspace_id": "ws_ann", "plan": "team", "mrr": "297.00", "currency": "EUR"}},
    )
    EventFactory(workspace_key="ws_bo", external_id="evt_other_ws", type="subscription.converted")
    alert = make_alert(
        workspace=world.ws_ann,
        recipient=world.ann,
        rule="converted",
        reason="Acme Analytics (dana@acme.io) converted to plan team at 297.00 EUR MRR on 2026-12-07.",
        routing="Owner of account Acme (acme.io)",
        context={
            "event_ids": [mine.external_id, "evt_other_ws", "evt_gone"],
            "values": {"plan": "team", "mrr": "297.00", "currency": "EUR", "converted_at": "2026-12-07T00:16:08+00:00"},
        },
    )
    Delivery.objects.create(alert=alert, channel="email", recipient="ann@example.com", status="sent", attempts=1)
    Delivery.objects.create(alert=alert, channel="slack", recipient="webhook", status="dead", attempts=6)
    return alert


def test_an_alert_page_shows_why_the_events_behind_it_routing_and_deliveries(client, world, evidenced):
    client.force_login(world.ann)

    response = client.get(f"/reps/alerts/{evidenced.pk}/")

    assert response.status_code == 200
    html = response.content.decode()
    assert evidenced.reason in html
    assert "Converted to paid" in html and "297.00 EUR" in html  # the event behind it, labelled
    assert "evt_other_ws" not in html and "workspace_id" not in html  # never another workspace's event
    assert "2 events it names are no longer stored" in html  # the gone one, and the one not about ws_ann
    assert "Why you" in html and "Owner of account Acme (acme.io)" in html
    assert "ann@example.com" in html and "Dead (out of attempts)" in html
    assert 'value="acknowledge"' in html and 'value="snooze"' in html and 'value="resolve"' in html
    assert "Converted</dt><dd>7 Dec 2026, 00:16 UTC" in html  # formatted facts


def test_an_action_on_the_alert_page_returns_to_it(client, world, evidenced):
    client.force_login(world.ann)
    here = f"/reps/alerts/{evidenced.pk}/"

    response = client.post(here, {"action": "resolve", "next": here})

    assert response["Location"] == here
    evidenced.refresh_from_db()
    assert evidenced.status == Alert.Status.RESOLVED


def test_another_reps_alert_page_is_a_404(client, world, evidenced):
    client.force_login(world.bo)

    assert client.get(f"/reps/alerts/{evidenced.pk}/").status_code == 404
    assert client.get("/reps/alerts/999999/").status_code == 404


def test_an_admin_alert_about_no_workspace_has_a_page_too(client, world):
    alert = Alert.objects.create(
        rule="sync_paused", dedupe_key="sync_paused:1", title="Salesforce sync paused", reason="API limit at 80 %."
    )
    client.force_login(world.admin)

    html = client.get(f"/reps/alerts/{alert.pk}/").content.decode()

    assert "API limit at 80 %." in html and "For</dt><dd>Lifecycle admins" in html
    assert "No particular event is behind this alert" in html and "No message was sent" in html


def test_the_inbox_links_each_alert_to_its_page(client, world):
    client.force_login(world.ann)

    assert f'href="/reps/alerts/{world.alert_ann.pk}/"' in client.get("/reps/alerts/").content.decode()


# --- 11. Paging, sorting, filters, bulk acknowledge, CSV ----------------------------------------


def test_the_inbox_pages_by_fifty_and_keeps_its_filters_in_the_page_links(client, world):
    for n in range(60):
        make_alert(workspace=world.ws_ann, recipient=world.ann, title=f"bulk {n:02d}")
    client.force_login(world.ann)

    first = client.get("/reps/alerts/", {"rule": "trial_expiring"})
    last = client.get("/reps/alerts/", {"rule": "trial_expiring", "page": 2})

    assert len(first.context["alerts"]) == 50 and len(last.context["alerts"]) == 11
    assert "?rule=trial_expiring&amp;page=2" in first.content.decode()
    assert "61 alerts, 1–50 shown" in first.content.decode()


def test_the_inbox_sorts_oldest_first_on_request(client, world):
    newer = make_alert(workspace=world.ws_ann, recipient=world.ann, title="newer")
    client.force_login(world.ann)

    oldest_first = [a.pk for a in client.get("/reps/alerts/", {"sort": "oldest"}).context["alerts"]]
    newest_first = [a.pk for a in client.get("/reps/alerts/").context["alerts"]]

    assert oldest_first == [world.alert_ann.pk, newer.pk] and newest_first == [newer.pk, world.alert_ann.pk]


def test_expiring_within_filters_alerts_and_workspaces(client, world):
    later = WorkspaceFactory(workspace_id="ws_later", account=world.ws_ann.account)
    Workspace.objects.filter(pk=later.pk).update(trial_expires_at=timezone.now() + timedelta(days=10))
    make_alert(workspace=later, recipient=world.ann)
    client.force_login(world.ann)

    alerts = client.get("/reps/alerts/", {"expiring_within": 7}).context["alerts"]
    workspaces = client.get("/reps/workspaces/", {"expiring_within": 7}).context["workspaces"]
    both = client.get("/reps/workspaces/", {"expiring_within": 14}).context["workspaces"]

    assert [a.workspace_key for a in alerts] == ["ws_ann"]
    assert [w.workspace_id for w in workspaces] == ["ws_ann"]
    assert {w.workspace_id for w in both} == {"ws_ann", "ws_later"}


def test_an_invalid_expiring_within_is_named_and_dropped(client, world):
    client.force_login(world.ann)

    response = client.get("/reps/workspaces/", {"expiring_within": "forever"})

    assert "Select a valid choice" in response.content.decode()
    assert [w.workspace_id for w in response.context["workspaces"]] == ["ws_ann"]


def test_workspaces_filter_by_rule_and_sort_by_mrr_in_the_reporting_currency(client, world):
    ExchangeRate.objects.create(currency="EUR", rate=Decimal("2.0"), as_of=date(2026, 12, 1))
    WorkspaceFactory(workspace_id="ws_eur", status="paid", mrr=Decimal("200.00"), currency="EUR")  # 400 USD
    WorkspaceFactory(workspace_id="ws_gbp", status="paid", mrr=Decimal("900.00"), currency="GBP")  # no rate
    client.force_login(world.admin)

    by_mrr = [w.workspace_id for w in client.get("/reps/workspaces/", {"sort": "mrr"}).context["workspaces"]]
    by_rule = client.get("/reps/workspaces/", {"rule": "converted"}).context["workspaces"]

    # paying: 400 USD (converted) > 297 USD; the pound without a rate is not ranked as if it were dollars, and
    # ws_nobody's 99 USD stopped recurring when it churned
    assert by_mrr[:2] == ["ws_eur", "ws_bo"] and by_mrr.index("ws_gbp") > 1
    assert [w.workspace_id for w in by_rule] == ["ws_bo"]


def test_bulk_acknowledge_acknowledges_the_ticked_alerts(client, world):
    second = make_alert(workspace=world.ws_ann, recipient=world.ann)
    client.force_login(world.ann)

    response = client.post(
        "/reps/alerts/acknowledge/", {"alert": [world.alert_ann.pk, second.pk], "next": "/reps/alerts/?sort=oldest"}
    )

    assert response["Location"] == "/reps/alerts/?sort=oldest"
    assert set(Alert.objects.filter(acknowledged_by=world.ann).values_list("pk", flat=True)) == {
        world.alert_ann.pk,
        second.pk,
    }
    assert "Acknowledged 2 alerts." in client.get(response["Location"]).content.decode()


def test_bulk_acknowledge_with_someone_elses_alert_changes_nothing_and_says_why(client, world):
    client.force_login(world.ann)

    response = client.post("/reps/alerts/acknowledge/", {"alert": [world.alert_ann.pk, world.alert_bo.pk]})

    assert Alert.objects.filter(status=Alert.Status.ACKNOWLEDGED).count() == 0
    page = client.get(response["Location"]).content.decode()
    assert f"Alert {world.alert_bo.pk} is not one of your alerts." in page


def test_csv_exports_only_what_the_rep_may_see_with_the_pages_filters(client, world):
    client.force_login(world.ann)

    alerts = csv_rows(client.get("/reps/alerts/", {"export": "csv", "rule": "trial_expiring"}))
    workspaces = csv_rows(client.get("/reps/workspaces/", {"export": "csv"}))

    assert [row["alert_id"] for row in alerts] == [str(world.alert_ann.pk)]
    assert [row["workspace_id"] for row in workspaces] == ["ws_ann"]
    assert workspaces[0]["owner_rep"] == "Ann Archer"


def test_csv_cells_that_would_run_as_formulas_are_defused(client, world):
    evil = WorkspaceFactory(workspace_id="ws_evil", name='=HYPERLINK("https://evil.example","x")', company="+1")
    make_alert(workspace=evil, recipient=world.ann, title="@SUM(1+1)", reason="-2+3")
    client.force_login(world.ann)

    (row,) = [r for r in csv_rows(client.get("/reps/alerts/", {"export": "csv"})) if r["workspace_id"] == "ws_evil"]
    (ws,) = [r for r in csv_rows(client.get("/reps/workspaces/", {"export": "csv"})) if r["workspace_id"] == "ws_evil"]

    assert row["title"] == "'@SUM(1+1)" and row["why"] == "'-2+3"
    assert row["workspace"] == ws["name"] == '\'=HYPERLINK("https://evil.example","x")'


@pytest.mark.parametrize(
    ("cell", "safe"),
    [("=1+1", "'=1+1"), ("+1", "'+1"), ("-1", "'-1"), ("@x", "'@x"), ("\tx", "'\tx"), ("a=b", "a=b"), (None, "")],
)
def test_csv_safe(cell, safe):
    assert csv_safe(cell) == safe


# --- 12. Money in the reporting currency --------------------------------------------------------


def test_dashboard_totals_mrr_lost_and_won_in_the_reporting_currency_at_admin_kept_rates(client, world):
    now = timezone.now()
    ExchangeRate.objects.create(currency="EUR", rate=Decimal("1.10"), as_of=date(2026, 12, 1))
    WorkspaceFactory(status="churned", mrr=Decimal("147.00"), currency="EUR", churned_at=now)
    WorkspaceFactory(status="churned", mrr=Decimal("30.00"), currency="GBP", churned_at=now)  # no rate
    WorkspaceFactory(status="paid", mrr=Decimal("100.00"), currency="EUR", converted_at=now)
    client.force_login(world.admin)

    response = client.get("/reps/")
    board, html = response.context["board"], response.content.decode()

    assert board.mrr_lost.total == Decimal("260.70")  # 147 EUR × 1.10 + 99 USD; the pounds stay apart
    assert board.mrr_won.total == Decimal("407.00")  # 100 EUR × 1.10 + 297 USD (ws_bo)
    assert "260.70 USD" in html and "407.00 USD" in html and "new MRR won" in html
    assert "30.00 GBP" in html and "no rate to USD: not in the total" in html
    assert "At admin-kept rates of 1 Dec 2026." in html
    assert "147.00 EUR" in html and "161.70 USD" in html  # the per-currency detail


def test_the_reporting_currency_is_a_setting_and_rates_to_another_one_are_not_used(client, world, settings):
    settings.REPORTING_CURRENCY = "EUR"
    ExchangeRate.objects.create(currency="EUR", reporting_currency="USD", rate=Decimal("1.10"), as_of=date.today())
    client.force_login(world.admin)

    board = client.get("/reps/").context["board"]

    assert board.mrr_lost.total == 0 and [p.currency for p in board.mrr_lost.unconverted] == ["USD"]


def test_the_workspaces_list_shows_mrr_with_its_currency_and_converted(client, world):
    ExchangeRate.objects.create(currency="EUR", rate=Decimal("1.10"), as_of=date(2026, 12, 1))
    WorkspaceFactory(workspace_id="ws_eur", status="paid", mrr=Decimal("1200.00"), currency="EUR")
    client.force_login(world.admin)

    html = client.get("/reps/workspaces/").content.decode()

    assert "297.00 USD" in html and "1,200.00 EUR" in html and "≈ 1,320.00 USD" in html
    assert "at admin-kept rates of 1 Dec 2026" in html


def test_exchange_rates_are_kept_in_the_admin(client, world):
    root = make_user("root", is_staff=True, is_superuser=True)
    client.force_login(root)

    response = client.post(
        "/admin/alerts/exchangerate/add/",
        {"currency": "EUR", "reporting_currency": "USD", "rate": "1.08", "as_of": "2026-12-01"},
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    assert str(ExchangeRate.objects.get()) == "1 EUR = 1.08 USD (2026-12-01)"
    refused = client.post(
        "/admin/alerts/exchangerate/add/",
        {"currency": "eur", "reporting_currency": "USD", "rate": "0", "as_of": "2026-12-01"},
    )
    assert refused.status_code == 200 and ExchangeRate.objects.count() == 1


# --- 13. Values a rep can read ------------------------------------------------------------------


def test_the_dashboard_names_the_rep_who_owns_each_trial_not_the_customer(client, world):
    soon = timezone.now() + timedelta(days=1)
    WorkspaceFactory(workspace_id="ws_kept", name="Kept Co", plan="trial", owner=world.bo, trial_expires_at=soon)
    client.force_login(world.admin)

    expiring = client.get("/reps/").content.decode().split('id="expiring-h"')[1].split("</section>")[0]

    assert "Ann Archer" in expiring and "bo" in expiring  # the account's owner; the kept owner
    assert "dana@acme.io" not in expiring
    assert ">Plan<" not in expiring and ">trial<" not in expiring


def test_alert_facts_are_labelled_and_formatted(client, world):
    make_alert(
        workspace=world.ws_ann,
        recipient=world.ann,
        rule="converted",
        context={"values": {"mrr": "147.00", "currency": "EUR", "converted_at": "2026-12-07T00:16:08+00:00"}},
    )
    client.force_login(world.ann)

    html = client.get("/reps/alerts/").content.decode()

    assert "<dt>Converted</dt><dd>7 Dec 2026, 00:16 UTC</dd>" in html
    assert "<dt>MRR</dt><dd>147.00 EUR</dd>" in html
    assert "converted_at" not in html and "2026-12-07T00:16:08" not in html


def test_the_timeline_names_events_in_words(client, world):
    EventFactory(workspace_key="ws_ann", type="subscription.converted", occurred_at=timezone.now())
    client.force_login(world.ann)

    timeline = client.get("/reps/workspaces/ws_ann/").content.decode().split('id="timeline-h"')[1]

    assert "Converted to paid" in timeline and "Trial started" in timeline
    assert "subscription.converted" not in timeline


def test_a_churned_trial_that_never_paid_shows_no_mrr_lost(client, world):
    WorkspaceFactory(workspace_id="ws_never", name="Never Paid", status="churned", mrr=None, churned_at=timezone.now())
    client.force_login(world.admin)

    html = client.get("/reps/").content.decode()
    churned = html.split('id="churned-h"')[1].split("</section>")[0]

    row = churned.split("Never Paid")[1].split("</tr>")[0]
    assert "trial, never paid" in row and "0.00" not in row


def test_format_of_values_outside_a_page():
    from alerts.display import facts

    shown = facts({"mrr_lost": None, "currency": "USD", "offset_days": 3, "trial_expires_at": "2026-12-10T06:46:00"})

    assert shown == [("Currency", "USD"), ("Reminder", "3-day reminder"), ("Trial expires", "10 Dec 2026, 06:46 UTC")]
