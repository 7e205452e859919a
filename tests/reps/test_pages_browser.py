"""The rep pages of issue 21 in Debian's Chromium: `/` to the login and home, an alert's own page, the
inbox's paging and bulk acknowledge, the workspaces list sorted by MRR in the reporting currency, and the
dashboard's money; no Content-Security-Policy violation anywhere. Screenshots go to the git-ignored
artifacts/browser/ folder."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from django.utils import timezone

from alerts.models import Alert, Delivery, ExchangeRate
from tests.browser import BROWSER_MARKS
from tests.factories import EventFactory, WorkspaceFactory
from tests.reps.conftest import PASSWORD, make_alert
from tests.reps.test_browser import (  # noqa: F401 (fixtures)
    ARTIFACTS,
    browser,
    csp_violations,
    full_page_screenshot,
    horizontal_overflow,
    log_in,
    plain_http_server,
    site,
    wait,
)

pytestmark = BROWSER_MARKS

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402


def test_the_root_address_leads_to_the_login_and_then_home(browser, site, world):  # noqa: F811
    # given: the address `make run` prints
    browser.get(f"{site}/")

    # then: the login page, and after logging in the rep's dashboard
    wait(browser, ec.presence_of_element_located((By.ID, "id_username"))).send_keys("ann")
    browser.find_element(By.ID, "id_password").send_keys(PASSWORD + Keys.ENTER)
    wait(browser, ec.presence_of_element_located((By.CSS_SELECTOR, "nav a[aria-current='page']")))
    assert browser.current_url == f"{site}/reps/"
    browser.get(f"{site}/")
    assert browser.current_url == f"{site}/reps/"
    assert csp_violations(browser) == []


def test_an_alert_opens_on_its_own_page_with_why_events_routing_and_deliveries(browser, site, world):  # noqa: F811
    # given: a conversion alert for ann with its event and two deliveries
    event = EventFactory(
        workspace_key="ws_ann",
        type="subscription.converted",
        occurred_at=timezone.now() - timedelta(hours=2),
        payload={"data": {"workspace_id": "ws_ann", "plan": "team", "mrr": "297.00", "currency": "EUR"}},
    )
    alert = make_alert(
        workspace=world.ws_ann,
        recipient=world.ann,
        rule="converted",
        title="Converted: Acme Analytics on team (297.00 EUR/month)",
        reason="Acme Analytics (dana@acme.io) converted to plan team at 297.00 EUR MRR on "
        f"{timezone.now():%Y-%m-%d}, eleven days before its trial would have ended.",
        routing="Owner of account Acme (acme.io)",
        context={
            "event_ids": [event.external_id],
            "values": {"plan": "team", "mrr": "297.00", "currency": "EUR", "converted_at": timezone.now().isoformat()},
        },
    )
    Delivery.objects.create(
        alert=alert, channel="email", recipient="ann@example.com", status="sent", sent_at=timezone.now()
    )
    Delivery.objects.create(alert=alert, channel="slack", recipient="webhook", status="failed", attempts=2)
    log_in(browser, site, "ann")

    # when: she opens it from the inbox by its title
    browser.get(f"{site}/reps/alerts/")
    wait(browser, ec.element_to_be_clickable((By.LINK_TEXT, alert.title))).click()

    # then: its page, with the why, the event behind it in words, why her, and the deliveries
    wait(browser, ec.presence_of_element_located((By.ID, "why-h")))
    assert browser.current_url == f"{site}/reps/alerts/{alert.pk}/"
    why = browser.find_element(By.CSS_SELECTOR, "section[aria-labelledby='why-h']").text
    assert "eleven days before its trial would have ended" in why and "MRR\n297.00 EUR" in why
    events = browser.find_element(By.CSS_SELECTOR, "section[aria-labelledby='events-h']").text
    assert "Converted to paid" in events and "subscription.converted" not in events
    routing = browser.find_element(By.CSS_SELECTOR, "section[aria-labelledby='routing-h']").text
    assert "Why you" in routing and "Owner of account Acme (acme.io)" in routing
    deliveries = browser.find_element(By.CSS_SELECTOR, "section[aria-labelledby='deliveries-h']").text
    assert "ann@example.com" in deliveries and "Failed (will retry)" in deliveries
    full_page_screenshot(browser, ARTIFACTS / "alert-page.png")

    # when: she acknowledges it there, she stays on its page
    browser.find_element(By.CSS_SELECTOR, "section[aria-labelledby='why-h'] button[value='acknowledge']").click()
    wait(browser, ec.text_to_be_present_in_element((By.CSS_SELECTOR, "ul.messages"), "Acknowledged"))
    assert browser.current_url == f"{site}/reps/alerts/{alert.pk}/"
    alert.refresh_from_db()
    assert alert.status == Alert.Status.ACKNOWLEDGED
    assert horizontal_overflow(browser) == [] and csp_violations(browser) == []


def test_the_inbox_pages_filters_and_acknowledges_several_alerts_at_once(browser, site, world):  # noqa: F811
    # given: 60 more alerts for ann
    for n in range(60):
        make_alert(workspace=world.ws_ann, recipient=world.ann, rule="converted", title=f"Converted #{n:02d}")
    log_in(browser, site, "ann")

    # when: she filters by rule and goes to the second page
    browser.get(f"{site}/reps/alerts/")
    Select(wait(browser, ec.presence_of_element_located((By.ID, "id_rule")))).select_by_value("converted")
    Select(browser.find_element(By.ID, "id_sort")).select_by_value("oldest")
    browser.find_element(By.CSS_SELECTOR, "form.filters button[type='submit']").click()
    wait(browser, ec.text_to_be_present_in_element((By.CSS_SELECTOR, "[role='status']"), "60 alerts, 1–50 shown"))
    assert browser.find_element(By.CSS_SELECTOR, "ol.alerts h3").text == "Converted #00"
    browser.find_element(By.CSS_SELECTOR, "nav.pager a[rel='next']").click()
    wait(browser, ec.text_to_be_present_in_element((By.CSS_SELECTOR, "nav.pager"), "Page 2 of 2"))
    assert "rule=converted" in browser.current_url and "sort=oldest" in browser.current_url

    # and ticks three alerts and acknowledges them together
    boxes = browser.find_elements(By.CSS_SELECTOR, "ol.alerts input[type='checkbox'][name='alert']")
    assert len(boxes) == 10
    for box in boxes[:3]:
        box.click()
    browser.save_screenshot(str(ARTIFACTS / "inbox-bulk-ticked.png"))
    browser.find_element(By.CSS_SELECTOR, "form.bulk button").click()

    # then: three acknowledged by her, back on the same page of the same filter
    wait(browser, ec.text_to_be_present_in_element((By.CSS_SELECTOR, "ul.messages"), "Acknowledged 3 alerts."))
    assert "page=2" in browser.current_url and "rule=converted" in browser.current_url
    assert Alert.objects.filter(acknowledged_by=world.ann).count() == 3
    browser.save_screenshot(str(ARTIFACTS / "inbox-bulk-done.png"))

    # when: she selects all on the page (a static script) and acknowledges the rest
    browser.find_element(By.CSS_SELECTOR, "input[data-select-all]").click()
    ticked = browser.find_elements(By.CSS_SELECTOR, "ol.alerts input[name='alert']:checked")
    assert len(ticked) == 7  # the three acknowledged ones cannot be ticked
    browser.find_element(By.CSS_SELECTOR, "form.bulk button").click()
    wait(browser, ec.text_to_be_present_in_element((By.CSS_SELECTOR, "ul.messages"), "Acknowledged 7 alerts."))
    assert Alert.objects.filter(acknowledged_by=world.ann).count() == 10
    assert csp_violations(browser) == []


def test_workspaces_sort_by_mrr_in_the_reporting_currency_and_the_dashboard_totals_it(browser, site, world):  # noqa: F811
    # given: rates kept in the admin, customers paying in euros and pounds (no rate for pounds), a churned trial
    now = timezone.now()
    ExchangeRate.objects.create(currency="EUR", rate=Decimal("1.0825"), as_of=date(2026, 12, 1))
    account = world.ws_ann.account
    WorkspaceFactory(
        workspace_id="ws_eur", name="Berlin GmbH", status="paid", plan="pro", mrr=Decimal("1200.00"), currency="EUR",
        account=account, converted_at=now - timedelta(days=3),
    )  # fmt: skip
    WorkspaceFactory(
        workspace_id="ws_gbp", name="London Ltd", status="paid", plan="team", mrr=Decimal("900.00"), currency="GBP",
        account=account, converted_at=now - timedelta(days=4),
    )  # fmt: skip
    WorkspaceFactory(
        workspace_id="ws_gone", name="Gone Trial", status="churned", plan="trial", account=account, churned_at=now
    )
    WorkspaceFactory(
        workspace_id="ws_lost", name="Lost Euro", status="churned", plan="team", mrr=Decimal("147.00"), currency="EUR",
        account=account, converted_at=now - timedelta(days=90), churned_at=now - timedelta(days=1),
    )  # fmt: skip
    log_in(browser, site, "ann")

    # when: the workspaces list, sorted by MRR
    browser.get(f"{site}/reps/workspaces/?sort=mrr")
    rows = wait(browser, ec.presence_of_all_elements_located((By.CSS_SELECTOR, "table tbody tr")))

    # then: euros rank by their dollar value, pounds without a rate after them, every amount with its currency,
    # a churned customer's MRR as lost, and the rep who owns each customer
    names = [row.find_element(By.CSS_SELECTOR, "td[data-label='Workspace'] a").text for row in rows]
    assert names[0] == "Berlin GmbH" and names.index("London Ltd") > 0
    first = rows[0].text
    assert "1,200.00 EUR" in first and "≈ 1,299.00 USD" in first and "Ann Archer" in first
    assert "no rate to USD" in rows[names.index("London Ltd")].text
    assert "147.00 EUR lost" in rows[names.index("Lost Euro")].text
    full_page_screenshot(browser, ARTIFACTS / "workspaces-by-mrr.png")

    # when: the dashboard
    browser.get(f"{site}/reps/")
    won = wait(browser, ec.presence_of_element_located((By.ID, "mrr-won"))).text
    lost = browser.find_element(By.ID, "mrr-lost").text

    # then: totals in dollars at the kept rates, pounds apart, and the churned trial that never paid
    assert won.startswith("1,299.00 USD") and "900.00 GBP" in won and "not in the total" in won
    assert lost.startswith("159.13 USD") and "At admin-kept rates of 1 Dec 2026." in lost
    churned = browser.find_element(By.CSS_SELECTOR, "section[aria-labelledby='churned-h']").text
    assert "trial, never paid" in churned and "0.00 USD" not in churned
    assert "open review item" not in browser.find_element(By.CSS_SELECTOR, "ul.stats").text
    full_page_screenshot(browser, ARTIFACTS / "dashboard-money.png")
    assert csp_violations(browser) == []
