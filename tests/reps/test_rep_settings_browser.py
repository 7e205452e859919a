"""The rep settings page in Debian's Chromium: reach it from the navigation, see errors named per field,
fix them and save; on a phone it fits; nothing breaks the Content-Security-Policy. Screenshots go to the
git-ignored artifacts/browser/ folder."""

from __future__ import annotations

from datetime import date, time

from alerts.models import Rep
from tests.browser import BROWSER_MARKS
from tests.reps.test_browser import (  # noqa: F401 (fixtures)
    ARTIFACTS,
    browser,
    csp_violations,
    log_in,
    plain_http_server,
    site,
    wait,
)

pytestmark = BROWSER_MARKS

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402


def set_value(driver, field_id: str, value: str) -> None:
    """Native time and date inputs take typed keys by locale; their value is what the form posts."""
    driver.execute_script("arguments[0].value = arguments[1]", driver.find_element(By.ID, field_id), value)


def test_a_rep_sets_quiet_hours_and_time_away_with_a_backup(browser, site, world):  # noqa: F811
    bo_rep = Rep.objects.create(user=world.bo)
    log_in(browser, site, "ann")

    # given: ann opens Settings from the navigation
    browser.find_element(By.LINK_TEXT, "Settings").click()
    wait(browser, ec.presence_of_element_located((By.CSS_SELECTOR, "form.settings")))
    assert browser.find_element(By.CSS_SELECTOR, "nav a[aria-current='page']").text == "Settings"
    legend = browser.find_element(By.CSS_SELECTOR, "form.settings legend")
    assert legend.text == "Channels"
    assert browser.find_element(By.CSS_SELECTOR, "form.settings fieldset").value_of_css_property("display") == "grid"
    browser.save_screenshot(str(ARTIFACTS / "rep-settings-1-page.png"))

    # when: she gives quiet hours without their end and days away without a backup
    Select(browser.find_element(By.ID, "id_time_zone")).select_by_value("Europe/Berlin")
    set_value(browser, "id_quiet_start", "22:00")
    set_value(browser, "id_away_from", "2026-12-20")
    set_value(browser, "id_away_until", "2026-12-31")
    browser.find_element(By.CSS_SELECTOR, "form.settings button[type='submit']").click()

    # then: nothing is saved, and each error is named next to its field and in the summary
    summary = wait(browser, ec.presence_of_element_located((By.ID, "form-errors")))
    assert "Nothing was saved" in summary.text
    assert "Quiet until" in summary.text and "Backup rep" in summary.text
    quiet_end = browser.find_element(By.ID, "id_quiet_end_errors").text
    assert "both the start and the end of quiet hours" in quiet_end
    assert "Name a backup rep" in browser.find_element(By.ID, "id_backup_errors").text
    assert browser.find_element(By.ID, "id_quiet_end").get_attribute("aria-invalid") == "true"
    assert Rep.objects.get(user=world.ann).quiet_start is None
    browser.set_window_size(1280, 2200)  # the whole form: the errors beside their fields
    browser.save_screenshot(str(ARTIFACTS / "rep-settings-2-errors.png"))

    # when: she fixes them (the values she gave are kept), turns Slack off and saves
    assert browser.find_element(By.ID, "id_quiet_start").get_attribute("value") == "22:00"
    set_value(browser, "id_quiet_end", "07:00")
    Select(browser.find_element(By.ID, "id_backup")).select_by_value(str(bo_rep.pk))
    browser.find_element(By.ID, "id_slack_on").click()
    browser.find_element(By.CSS_SELECTOR, "form.settings button[type='submit']").click()

    # then: saved, and the page says so
    wait(browser, ec.text_to_be_present_in_element((By.CSS_SELECTOR, "ul.messages"), "Settings saved."))
    rep = Rep.objects.get(user=world.ann)
    assert (rep.time_zone, rep.quiet_start, rep.quiet_end, rep.slack_on) == ("Europe/Berlin", time(22), time(7), False)
    assert (rep.away_from, rep.away_until, rep.backup) == (date(2026, 12, 20), date(2026, 12, 31), bo_rep)
    status = browser.find_element(By.ID, "away-status").text
    assert status == "Away from 2026-12-20 until 2026-12-31: bo gets your new alerts."
    browser.save_screenshot(str(ARTIFACTS / "rep-settings-3-saved.png"))

    # and on a phone the page fits the screen
    browser.set_window_size(390, 844)
    browser.get(f"{site}/reps/settings/")
    wait(browser, ec.presence_of_element_located((By.CSS_SELECTOR, "form.settings")))
    overflow = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    browser.save_screenshot(str(ARTIFACTS / "rep-settings-4-phone.png"))
    assert overflow <= 0, f"the settings page scrolls sideways on a phone by {overflow}px"

    assert csp_violations(browser) == []
