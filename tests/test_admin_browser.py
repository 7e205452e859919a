"""The admin's lists in a real browser (Debian's Chromium via Selenium) at 1400 and 1280 px.

Each business changelist, filled with records shaped like production's (long provider ids, long
emails, prices with a currency), must show every column inside its table's box: no column cut off,
none pushed out of sight, no sideways scrolling. Screenshots go to BROWSER_ARTIFACTS (default: the
git-ignored artifacts/browser/admin/). Skipped, saying why, only when chromium or chromedriver is absent.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from pytest_django.live_server_helper import LiveServer

from alerts.models import Alert, Delivery
from events.models import Event
from salesforce.models import OutboxItem
from tests.browser import BROWSER_MARKS, chrome, plain_http_live_server
from tests.factories import AccountFactory, EventFactory, LeadFactory, WorkspaceFactory
from usage.models import Cohort, Stage
from workspaces.models import ReviewItem, Workspace

ARTIFACTS = (
    Path(os.environ.get("BROWSER_ARTIFACTS") or Path(__file__).resolve().parents[1] / "artifacts" / "browser") / "admin"
)
WIDTHS = (1400, 1280)

pytestmark = BROWSER_MARKS

webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install -e '.[dev]')")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

#: The lists admins work in, as (admin URL name, what its rows are).
CHANGELISTS = (
    "events_event",
    "workspaces_reviewitem",
    "workspaces_workspace",
    "workspaces_lead",
    "workspaces_account",
    "sync_outboxitem",
    "alerts_alert",
    "alerts_delivery",
    "usage_cohort",
    "usage_stage",
)

#: Per cell: how far its content reaches past its box (a clipped column), and the table's own overflow.
MEASURE = """
const table = document.querySelector('#result_list');
const box = table.closest('.results') || table.parentElement;
const boxRight = box.getBoundingClientRect().right;
const cells = [...table.querySelectorAll('thead th, tbody td, tbody th')];
const clipped = cells
  .map(cell => {
    const rect = cell.getBoundingClientRect();
    const past = Math.max(rect.right - boxRight, rect.right - window.innerWidth, cell.scrollWidth - cell.clientWidth);
    return [cell.className || cell.tagName, cell.innerText.trim().slice(0, 40), Math.round(past)];
  })
  .filter(entry => entry[2] > 1);
return {
  clipped: clipped.slice(0, 10),
  tableOverflow: Math.round(table.getBoundingClientRect().width - box.clientWidth),
  boxScroll: box.scrollWidth - box.clientWidth,
  pageScroll: document.documentElement.scrollWidth - window.innerWidth,
  headers: [...table.querySelectorAll('thead th')].map(th => th.innerText.trim()),
};
"""


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield from chrome(1400)


@pytest.fixture(scope="module")
def plain_http_server(django_db_setup) -> Iterator[LiveServer]:
    yield from plain_http_live_server()


@pytest.fixture
def site(plain_http_server, transactional_db, settings) -> Iterator[str]:
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    with plain_http_server._live_server_modified_settings:
        yield plain_http_server.url


def sign_in(driver, site: str) -> None:
    """A superuser's session cookie, handed to the browser (no password hashing on a busy machine)."""
    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@example.com", None))
    driver.get(f"{site}/admin/login/")
    driver.add_cookie({"name": "sessionid", "value": client.cookies["sessionid"].value, "path": "/"})


def window(driver, width: int) -> None:
    driver.set_window_size(width, 900)
    inner = driver.execute_script("return window.innerWidth")
    driver.set_window_size(width + (width - inner), 900)  # the viewport itself is `width` wide


@pytest.fixture
def records() -> dict[str, object]:
    """Records shaped like production's: provider ids at full length, long names and emails."""
    now = timezone.now()
    account = AccountFactory(name="Redwood Analytics GmbH", domain="redwood-analytics.io")
    lead = LeadFactory(email="kenji.yamamoto@redwood-analytics.io", first_name="Kenji", last_name="Yamamoto")
    workspaces = [
        WorkspaceFactory(
            workspace_id=f"ws_3f9a0c1b2d{i}",
            name=f"Redwood Analytics – Team {i}",
            email=f"kenji.yamamoto{i}@redwood-analytics.io",
            status=Workspace.Status.PAID,
            plan="business_annual",
            mrr=Decimal("294.00") * (i + 1),
            currency="EUR",
            lead=lead,
            account=account,
            needs_review=i == 0,
            last_event_at=now,
        )
        for i in range(3)
    ]
    for i in range(6):
        EventFactory(
            source=Event.Source.STRIPE,
            external_id=f"evt_1QxYz7LkdIwHu7ixAbCdEf{i:02d}",
            type="customer.subscription.updated",
            workspace_key=workspaces[i % 3].workspace_id,
            status=Event.Status.ERROR if i == 0 else Event.Status.COMPLETED,
            retry_count=3 if i == 0 else 0,
            next_attempt_at=now + timedelta(minutes=5) if i == 0 else None,
        )
        EventFactory(
            external_id=f"msg_2a7f9c0e1b3d5f7a9c0e1b3d{i:02d}",
            type="subscription.payment_failed",
            workspace_key="ws_0000000000ab",
        )
    for i, kind in enumerate(ReviewItem.Kind.values):
        ReviewItem.objects.create(
            kind=kind,
            dedupe_key=f"k{i}",
            workspace=workspaces[i % 3],
            reason="Two Salesforce accounts match the domain redwood-analytics.io; the engine cannot choose "
            "between 0015g00000ABCdeAAB and 0015g00000XYZabAAB.",
        )
    keys = {"Account": "acc_1", "Lead": "lead_1", "LeadConversion": "lead_1", "Contact": "con_1"}
    for i, object_type in enumerate(OutboxItem.ObjectType.values):
        key = keys.get(object_type, workspaces[0].workspace_id)
        OutboxItem.objects.create(
            object_type=object_type,
            external_id=f"Lead:{key}" if object_type == "Deletion" else key,
            workspace_key=workspaces[0].workspace_id,
            payload={},
            state=OutboxItem.State.values[i % len(OutboxItem.State.values)],
            salesforce_id="0015g00000ABCdeAAB",
            error_code="UNABLE_TO_LOCK_ROW" if i % 2 else "",
            next_attempt_at=now,
        )
    rep = User.objects.create_user("ann.rep", email="ann.rep@example.com", first_name="Ann", last_name="Rep")
    for i, workspace in enumerate(workspaces):
        alert = Alert.objects.create(
            rule="trial_expiring",
            dedupe_key=f"trial_expiring:{workspace.workspace_id}",
            audience=Alert.Audience.REP,
            workspace=workspace,
            workspace_key=workspace.workspace_id,
            recipient=rep,
            title=f"Trial ends in 3 days: {workspace.name}",
            reason="The trial ends on 2026-12-10 and nobody on the team has used e-sign yet.",
            routed_by=Alert.RoutedBy.ROUND_ROBIN,
        )
        Delivery.objects.create(
            alert=alert,
            channel="email",
            recipient=f"ann.rep+alerts{i}@example.com",
            user=rep,
            mode=Delivery.Mode.DIGEST,
            next_attempt_at=now + timedelta(hours=8),
        )
    condition = {"all": [{"metric": "active_days_7d", "op": ">=", "value": 4}]}
    # The migrations' own definitions, made again if a transactional test before this one flushed them.
    Cohort.objects.get_or_create(key="power_users", defaults={"name": "Power users", "condition": condition})
    Stage.objects.get_or_create(key="activated", defaults={"name": "Activated", "condition": condition, "order": 20})
    return {"workspaces": workspaces}


def fit_problems(driver) -> dict[str, object]:
    """What does not fit in the changelist on screen: clipped cells, a table wider than its box, sideways scrolling."""
    measured = driver.execute_script(MEASURE)
    problems = {key: measured[key] for key in ("tableOverflow", "boxScroll", "pageScroll") if measured[key] > 0}
    if measured["clipped"]:
        problems["clipped"] = measured["clipped"]
    return problems


@pytest.mark.parametrize("width", WIDTHS)
def test_every_column_of_the_admin_lists_fits(browser, site, records, width):
    sign_in(browser, site)
    window(browser, width)
    problems = {}
    for name in CHANGELISTS:
        browser.get(f"{site}/admin/{name.replace('_', '/', 1)}/")
        WebDriverWait(browser, 10).until(ec.presence_of_element_located((By.ID, "result_list")))
        browser.save_screenshot(str(ARTIFACTS / f"{width}-{name}.png"))
        if found := fit_problems(browser):
            problems[name] = found
    assert not problems, f"at {width} px: {problems}"
    refused = [
        entry["message"] for entry in browser.get_log("browser") if "Content Security Policy" in entry["message"]
    ]
    assert not refused, refused


@pytest.mark.parametrize("width", WIDTHS)
def test_the_lists_admins_named_show_what_was_cut_off(browser, site, records, width):
    """Events kept their times, Workspaces showed MRR as "294.(", Review items wrapped its counter."""
    sign_in(browser, site)
    window(browser, width)

    browser.get(f"{site}/admin/events/event/")
    headers = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "#result_list thead th")]
    assert {"RECEIVED", "OCCURRED", "RETRIES"} <= set(headers), headers
    first = browser.find_element(By.CSS_SELECTOR, "#result_list tbody tr")
    assert all(
        cell.is_displayed() and cell.text
        for cell in first.find_elements(By.CSS_SELECTOR, "td.field-received, td.field-occurred")
    )
    workspace = records["workspaces"][0]
    link = browser.find_element(By.LINK_TEXT, workspace.workspace_id)
    assert link.get_attribute("href").endswith(f"/admin/workspaces/workspace/{workspace.pk}/change/")

    # an event waiting for a retry says when, inside its column
    browser.get(f"{site}/admin/events/event/?status__exact=error")
    retries = browser.find_element(By.CSS_SELECTOR, "#result_list td.field-retries").text
    assert retries.startswith("3\nnext 20"), retries
    assert not fit_problems(browser)
    browser.save_screenshot(str(ARTIFACTS / f"{width}-events-retrying.png"))

    browser.get(f"{site}/admin/workspaces/workspace/")
    amounts = [cell.text for cell in browser.find_elements(By.CSS_SELECTOR, "#result_list td.field-mrr_column")]
    assert sorted(amounts) == ["294.00 EUR", "588.00 EUR", "882.00 EUR"]
    assert not fit_problems(browser)

    browser.get(f"{site}/admin/workspaces/reviewitem/")
    counter = browser.find_element(By.CSS_SELECTOR, ".actions .action-counter")
    go = browser.find_element(By.CSS_SELECTOR, ".actions button[name='index']")
    lines = browser.execute_script("return arguments[0].getClientRects().length", counter)
    assert (
        lines == 1 and abs(counter.rect["y"] + counter.rect["height"] / 2 - go.rect["y"] - go.rect["height"] / 2) < 6
    ), (
        counter.rect,
        go.rect,
    )
    browser.save_screenshot(str(ARTIFACTS / f"{width}-review-counter.png"))

    browser.get(f"{site}/admin/")
    captions = [caption.text for caption in browser.find_elements(By.CSS_SELECTOR, "#content-main .module caption")]
    assert captions[:3] == ["EVENTS", "WORKSPACES AND CRM RECORDS", "SALESFORCE SYNC"], captions
    browser.save_screenshot(str(ARTIFACTS / f"{width}-index.png"))


def test_the_ops_page_shows_scheduled_deliveries_apart_from_the_backlog(browser, site, records):
    sign_in(browser, site)
    window(browser, 1280)

    browser.get(f"{site}/ops/")

    section = WebDriverWait(browser, 10).until(
        ec.presence_of_element_located((By.XPATH, "//table[caption[contains(., 'Alert deliveries')]]"))
    )
    rows = {
        row.find_element(By.TAG_NAME, "th").text.split("\n")[0]: row.find_element(By.CSS_SELECTOR, "td").text
        for row in section.find_elements(By.CSS_SELECTOR, "tbody tr")
    }
    assert rows["Scheduled: daily digests"] == "3" and rows["Deliveries backlog (due, not sent)"] == "0", rows
    section.location_once_scrolled_into_view  # noqa: B018 (scrolls it into the screenshot)
    browser.save_screenshot(str(ARTIFACTS / "1280-ops.png"))
    assert browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth") <= 0
