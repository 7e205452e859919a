"""The rep pages in a real browser: Debian's Chromium driven by Selenium through chromedriver.

Log in as a rep, see the expiring trial on the dashboard, acknowledge its alert in the inbox, open the
workspace page; then the same pages on a phone-sized window and by keyboard. Screenshots go to the
git-ignored artifacts/browser/ folder. Skipped, saying why, only when chromium or chromedriver is absent
(.ci/run installs both).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.utils import timezone
from pytest_django.live_server_helper import LiveServer

from alerts.models import Alert
from tests.browser import BROWSER_MARKS, chrome, plain_http_live_server
from tests.reps.conftest import PASSWORD, PAYLOAD_SECRET, make_user

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "browser"

pytestmark = BROWSER_MARKS

webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install -e '.[dev]')")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield from chrome(1280)


@pytest.fixture(scope="module")
def plain_http_server(django_db_setup) -> Iterator[LiveServer]:
    yield from plain_http_live_server()


@pytest.fixture
def site(plain_http_server, transactional_db, settings) -> Iterator[str]:
    # Plain HTTP: secure-only cookies would never come back to the server.
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    with plain_http_server._live_server_modified_settings:  # its host in ALLOWED_HOSTS
        yield plain_http_server.url


def wait(driver, condition, timeout: float = 10):
    return WebDriverWait(driver, timeout).until(condition)


def log_in(driver, site: str, username: str) -> None:
    driver.get(f"{site}/reps/")
    wait(driver, ec.presence_of_element_located((By.ID, "id_username")))
    driver.find_element(By.ID, "id_username").send_keys(username)
    driver.find_element(By.ID, "id_password").send_keys(PASSWORD + Keys.ENTER)
    wait(driver, ec.presence_of_element_located((By.CSS_SELECTOR, "nav a[aria-current='page']")))


def test_a_rep_sees_an_expiring_trial_acknowledges_its_alert_and_opens_the_workspace(browser, site, world):
    # given: ann is sent to the login page and logs in
    log_in(browser, site, "ann")
    assert browser.current_url == f"{site}/reps/"

    # then: the dashboard lists her trial expiring this week
    expiring = browser.find_element(By.CSS_SELECTOR, "section[aria-labelledby='expiring-h']")
    assert "Acme Analytics" in expiring.text
    assert "Nobody Inc" not in browser.page_source
    browser.save_screenshot(str(ARTIFACTS / "01-dashboard.png"))

    # when: she opens the inbox from the navigation and acknowledges the alert
    browser.find_element(By.LINK_TEXT, "Alerts").click()
    item = wait(browser, ec.presence_of_element_located((By.ID, f"alert-{world.alert_ann.pk}")))
    assert world.alert_ann.reason in item.text
    browser.save_screenshot(str(ARTIFACTS / "02-inbox.png"))
    item.find_element(By.CSS_SELECTOR, "button[value='acknowledge']").click()

    # then: the page says so, the alert is acknowledged by her
    wait(browser, ec.text_to_be_present_in_element((By.CSS_SELECTOR, "ul.messages"), "Acknowledged"))
    world.alert_ann.refresh_from_db()
    assert world.alert_ann.status == Alert.Status.ACKNOWLEDGED
    assert world.alert_ann.acknowledged_by == world.ann
    browser.save_screenshot(str(ARTIFACTS / "03-acknowledged.png"))

    # when: she follows the alert to its workspace
    browser.find_element(By.CSS_SELECTOR, f"#alert-{world.alert_ann.pk} a[href='/reps/workspaces/ws_ann/']").click()

    # then: the timeline, the links and the alert are there, and no payload
    heading = wait(browser, ec.presence_of_element_located((By.TAG_NAME, "h1")))
    assert "Acme Analytics" in heading.text
    timeline = browser.find_element(By.CSS_SELECTOR, "section[aria-labelledby='timeline-h']").text
    assert "Trial started" in timeline and "team" in timeline
    assert "dana@acme.io" in browser.find_element(By.CSS_SELECTOR, "section[aria-labelledby='links-h']").text
    assert PAYLOAD_SECRET not in browser.page_source
    browser.save_screenshot(str(ARTIFACTS / "04-workspace.png"))


#: Everything on the page that reaches past the right edge of the window, or scrolls sideways inside it
#: (a table in an overflow:auto wrapper still runs off a phone: the rep must swipe inside it).
OVERFLOW_JS = """
const width = document.documentElement.clientWidth;
const name = (el) => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
  (el.className && typeof el.className === 'string' ? '.' + el.className.trim().split(/\\s+/).join('.') : '');
const found = [];
const page = document.documentElement.scrollWidth;
if (page > width) found.push('the page is ' + page + 'px wide');
for (const el of document.body.querySelectorAll('*')) {
  if (el.closest('thead, .skip-link, .visually-hidden, script, style')) continue;
  const style = getComputedStyle(el);
  if (style.display === 'none' || style.visibility === 'hidden') continue;
  const box = el.getBoundingClientRect();
  if (box.width === 0 || box.height === 0) continue;
  const text = el.textContent.trim().slice(0, 60);
  if (box.right > width + 0.5) found.push(name(el) + ' ends at ' + Math.round(box.right) + 'px: ' + text);
  if (['auto', 'scroll'].includes(style.overflowX) && el.scrollWidth > el.clientWidth + 1)
    found.push(name(el) + ' scrolls sideways by ' + (el.scrollWidth - el.clientWidth) + 'px');
}
return found;
"""


def horizontal_overflow(driver) -> list[str]:
    return driver.execute_script(OVERFLOW_JS)


def full_page_screenshot(driver, path: Path, *, max_height: int = 2400) -> None:
    """The page beyond the window (a phone page is several screens long), down to `max_height`."""
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    # Captured beyond the window, the page has no scroll bar: it is laid out at the window's full width.
    width = max(size["width"], driver.execute_script("return window.innerWidth"))
    clip = {"x": 0, "y": 0, "width": width, "height": min(size["height"], max_height), "scale": 1}
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"captureBeyondViewport": True, "clip": clip})
    path.write_bytes(base64.b64decode(shot["data"]))


PHONE_PAGES = [
    ("dashboard", "/reps/"),
    ("inbox", "/reps/alerts/"),
    ("workspaces", "/reps/workspaces/"),
    ("workspace", "/reps/workspaces/ws_ann/"),
]


def test_pages_fit_a_phone_screen(browser, site, world):
    # given: the rows a real list has (long names and addresses, money in two currencies, several pages)
    long_named(world)
    log_in(browser, site, "ann")
    browser.set_window_size(390, 844)

    pages = [*PHONE_PAGES, ("alert", f"/reps/alerts/{world.alert_ann.pk}/")]
    for name, path in pages:
        browser.get(f"{site}{path}")
        wait(browser, ec.presence_of_element_located((By.TAG_NAME, "h1")))
        overflow = horizontal_overflow(browser)
        full_page_screenshot(browser, ARTIFACTS / f"phone-{name}.png")
        assert overflow == [], f"{path} runs off a phone's screen"


def long_named(world) -> None:
    """A customer with a long name and address, in euros, with an alert and two deliveries; 55 more alerts."""
    from alerts.models import Delivery, ExchangeRate
    from tests.factories import WorkspaceFactory
    from tests.reps.conftest import make_alert

    ExchangeRate.objects.create(currency="EUR", rate=Decimal("1.0825"), as_of=date(2026, 12, 1))
    ws = WorkspaceFactory(
        workspace_id="ws_internationalisation_partnership_0001",
        name="Internationalisation Consultancy Partnership Worldwide",
        email="kenji.watanabe-longsurname@very-long-customer-domain-example.co.uk",
        status="paid",
        plan="enterprise",
        mrr=Decimal("12450.00"),
        currency="EUR",
        account=world.ws_ann.account,
        converted_at=timezone.now() - timedelta(days=1),
    )
    for n in range(55):
        make_alert(workspace=ws, recipient=world.ann, rule="converted", title=f"Converted: {ws.name} #{n}")
    Delivery.objects.create(
        alert=world.alert_ann, channel="email", recipient="ann.archer.with.a.long.address@example.com", status="sent"
    )
    Delivery.objects.create(alert=world.alert_ann, channel="slack", recipient="webhook", status="dead", attempts=6)


def test_keyboard_skip_link_and_acknowledge_without_a_mouse(browser, site, world):
    log_in(browser, site, "ann")
    browser.get(f"{site}/reps/alerts/")
    body = wait(browser, ec.presence_of_element_located((By.TAG_NAME, "body")))

    # the first Tab reaches the skip link, and it is visible once focused
    body.send_keys(Keys.TAB)
    focused = browser.switch_to.active_element
    assert focused.text == "Skip to main content" and focused.is_displayed()
    focused.send_keys(Keys.ENTER)
    assert browser.switch_to.active_element.get_attribute("id") == "main"

    # tabbing on from main reaches the acknowledge button, which Enter presses
    for _ in range(30):
        browser.switch_to.active_element.send_keys(Keys.TAB)
        if browser.switch_to.active_element.get_attribute("value") == "acknowledge":
            break
    else:
        pytest.fail("the Acknowledge button is not reachable with Tab")
    browser.switch_to.active_element.send_keys(Keys.ENTER)

    wait(browser, ec.text_to_be_present_in_element((By.CSS_SELECTOR, "ul.messages"), "Acknowledged"))
    world.alert_ann.refresh_from_db()
    assert world.alert_ann.status == Alert.Status.ACKNOWLEDGED


def csp_violations(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if "Content Security Policy" in entry["message"]]


def test_every_page_works_under_the_content_security_policy(browser, site, world):
    # given: a superuser logged in at the admin login
    make_user("root", is_staff=True, is_superuser=True)
    browser.get(f"{site}/admin/login/")
    wait(browser, ec.presence_of_element_located((By.ID, "id_username"))).send_keys("root")
    browser.find_element(By.ID, "id_password").send_keys(PASSWORD + Keys.ENTER)
    wait(browser, ec.presence_of_element_located((By.ID, "user-tools")))

    # when / then: the admin's scripts run (a change form's related-object widgets, the sidebar filter)
    browser.get(f"{site}/admin/workspaces/workspace/{world.ws_ann.pk}/change/")
    wait(browser, ec.presence_of_element_located((By.ID, "workspace_form")))
    assert browser.execute_script("return typeof django !== 'undefined' && typeof django.jQuery === 'function'")
    browser.save_screenshot(str(ARTIFACTS / "csp-admin.png"))

    # the ops page with its own stylesheet (a grid of sections)
    browser.get(f"{site}/ops/")
    sections = wait(browser, ec.presence_of_element_located((By.CLASS_NAME, "ops-sections")))
    assert sections.value_of_css_property("display") == "grid"

    # the rep pages with theirs (the skip link is off screen until focused)
    browser.get(f"{site}/reps/workspaces/ws_ann/")
    skip = wait(browser, ec.presence_of_element_located((By.CLASS_NAME, "skip-link")))
    assert skip.value_of_css_property("position") == "absolute" and skip.location["x"] < 0

    # Swagger UI: its script is a file, it fetches the schema and renders the operations
    browser.get(f"{site}/api/docs/")
    wait(browser, ec.presence_of_element_located((By.CSS_SELECTOR, ".opblock-summary-path")), timeout=30)
    assert "/api/workspaces/" in browser.find_element(By.ID, "swagger-ui").text
    browser.save_screenshot(str(ARTIFACTS / "csp-docs.png"))

    assert csp_violations(browser) == []


def test_a_rep_login_page_breaks_nothing_under_the_policy(browser, site, world):
    log_in(browser, site, "ann")
    for path in ("/reps/", "/reps/alerts/", "/reps/workspaces/"):
        browser.get(f"{site}{path}")
        wait(browser, ec.presence_of_element_located((By.TAG_NAME, "h1")))

    assert csp_violations(browser) == []
