"""The rep pages in a real browser: Debian's Chromium driven by Selenium through chromedriver.

Log in as a rep, see the expiring trial on the dashboard, acknowledge its alert in the inbox, open the
workspace page; then the same pages on a phone-sized window and by keyboard. Screenshots go to the
git-ignored artifacts/browser/ folder. Skipped, saying why, only when chromium or chromedriver is absent
(.ci/run installs both).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import override_settings
from pytest_django.live_server_helper import LiveServer

from alerts.models import Alert
from tests.reps.conftest import PASSWORD, PAYLOAD_SECRET, make_user

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "browser"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
        reason="needs Debian's chromium and chromium-driver: apt-get install -y chromium chromium-driver",
    ),
]

webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install -e '.[dev]')")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(argument)
    # The console log: a page the Content-Security-Policy breaks says so there.
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # The driver's path is given, so Selenium Manager never looks for (or downloads) one.
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(0)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def plain_http_server(django_db_setup) -> Iterator[LiveServer]:
    """A live server of our own: its middleware must be built with the HTTPS redirect off.

    pytest-django's `live_server` is started once per session with the production settings the suite
    runs under, so its SecurityMiddleware would send the browser to https:// for good.
    """
    server = LiveServer("127.0.0.1", start=False)
    with override_settings(SECURE_SSL_REDIRECT=False):
        server.start()
    yield server
    server.stop()


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
    assert "trial.started" in timeline and "team" in timeline
    assert "dana@acme.io" in browser.find_element(By.CSS_SELECTOR, "section[aria-labelledby='links-h']").text
    assert PAYLOAD_SECRET not in browser.page_source
    browser.save_screenshot(str(ARTIFACTS / "04-workspace.png"))


def test_pages_fit_a_phone_screen(browser, site, world):
    log_in(browser, site, "ann")
    browser.set_window_size(390, 844)

    for name, path in [("dashboard", "/reps/"), ("inbox", "/reps/alerts/"), ("workspace", "/reps/workspaces/ws_ann/")]:
        browser.get(f"{site}{path}")
        wait(browser, ec.presence_of_element_located((By.TAG_NAME, "h1")))
        overflow = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        browser.save_screenshot(str(ARTIFACTS / f"phone-{name}.png"))
        assert overflow <= 0, f"{path} scrolls sideways on a phone by {overflow}px"


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
