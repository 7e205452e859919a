"""Charts in a real browser (Debian's Chromium): plotly.js from the plotly package draws under the strict
Content-Security-Policy, with no violation in the console. Screenshots go to artifacts/browser/."""

from __future__ import annotations

from datetime import timedelta

from django.test import override_settings
from django.utils import timezone

from tests.browser import BROWSER_MARKS
from tests.factories import WorkspaceFactory
from tests.reps.conftest import PASSWORD, make_user, world  # noqa: F401 (a fixture)
from tests.reps.test_browser import (  # noqa: F401 (fixtures)
    ARTIFACTS,
    By,
    Keys,
    browser,
    csp_violations,
    ec,
    log_in,
    plain_http_server,
    site,
    wait,
)
from tests.usage.test_behaviour import FEATURES, usage
from usage.models import Cohort
from usage.rollups import usage_rollup
from usage.services import behaviour_refresh

pytestmark = BROWSER_MARKS


def test_the_cohort_preview_draws_its_members_chart_under_the_csp(browser, site):  # noqa: F811
    now = timezone.now()
    for n in range(3):
        WorkspaceFactory(workspace_id=f"ws_{n}")
        for day in range(5):
            usage(f"ws_{n}", now - timedelta(days=day, minutes=5), FEATURES[day % 2])
    with override_settings(BEHAVIOUR_PROFILES=False):
        usage_rollup()
    behaviour_refresh(workspace_keys=["ws_0", "ws_1", "ws_2"])
    make_user("root", is_staff=True, is_superuser=True)
    cohort = Cohort.objects.get(key="feature_shallow_frequent")

    browser.get(f"{site}/admin/login/")
    wait(browser, ec.presence_of_element_located((By.ID, "id_username"))).send_keys("root")
    browser.find_element(By.ID, "id_password").send_keys(PASSWORD + Keys.ENTER)
    wait(browser, ec.presence_of_element_located((By.ID, "user-tools")))
    browser.get(f"{site}/admin/usage/cohort/{cohort.pk}/preview/")

    chart = wait(browser, ec.presence_of_element_located((By.CSS_SELECTOR, "[data-chart].chart-drawn")))
    assert chart.find_elements(By.CSS_SELECTOR, "svg.main-svg"), "plotly drew its SVG"
    browser.save_screenshot(str(ARTIFACTS / "usage-cohort-preview.png"))
    assert "Matches now: 3 of 3" in browser.page_source
    assert csp_violations(browser) == []


def test_the_rep_workspace_page_draws_the_usage_chart_under_the_csp(browser, site, world):  # noqa: F811
    now = timezone.now()
    for day in range(12):
        usage("ws_ann", now - timedelta(days=day, minutes=5), FEATURES[day % 4])
        usage("ws_ann", now - timedelta(days=day, minutes=9), "api.envelopes", product="api", user_email="lee@acme.io")
    with override_settings(BEHAVIOUR_PROFILES=False):
        usage_rollup()
    behaviour_refresh(workspace_keys=["ws_ann"])

    log_in(browser, site, "ann")
    browser.get(f"{site}/reps/workspaces/ws_ann/")
    chart = wait(browser, ec.presence_of_element_located((By.CSS_SELECTOR, "[data-chart].chart-drawn")))
    assert len(chart.find_elements(By.CSS_SELECTOR, "g.trace")) >= 4, "bars and lines for both products"
    browser.execute_script("arguments[0].scrollIntoView()", chart)
    browser.save_screenshot(str(ARTIFACTS / "usage-workspace-chart.png"))
    assert csp_violations(browser) == []
