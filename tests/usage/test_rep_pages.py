"""Behaviour on the rep pages: the workspace page's usage chart, metrics, cohorts and stage history with
their why; the list's stage, last active and filters by cohort and stage; a rep sees the customers they own."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from tests.reps.conftest import World, world  # noqa: F401 (a fixture: the rep pages' people and workspaces)
from tests.usage.test_behaviour import FEATURES, usage
from usage.rollups import usage_rollup
from usage.services import behaviour_refresh

pytestmark = pytest.mark.django_db


@pytest.fixture
def evaluated(request: pytest.FixtureRequest) -> World:
    """ws_ann: active five of the last seven days with two features; ws_bo: never."""
    people: World = request.getfixturevalue("world")
    now = timezone.now()
    for day in range(5):
        usage("ws_ann", now - timedelta(days=day, minutes=5), FEATURES[day % 2])
    with override_settings(BEHAVIOUR_PROFILES=False):
        usage_rollup()
    behaviour_refresh(workspace_keys=["ws_ann", "ws_bo", "ws_nobody"])
    return people


def page_for(user, url: str, **params) -> str:
    client = Client()
    client.force_login(user)
    response = client.get(url, params)
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def test_the_workspace_page_shows_usage_stage_and_cohorts_with_their_why(evaluated: World):
    html = page_for(evaluated.ann, "/reps/workspaces/ws_ann/")

    assert "Usage and lifecycle stage" in html
    assert 'data-chart="usage-figure"' in html and 'id="usage-figure"' in html  # the chart and its data
    assert "vendor/plotly.min.js" in html and "engine/charts.js" in html
    assert "Stage: <strong>Activated</strong>" in html
    assert "Feature-shallow, frequent" in html
    assert '✓ active days 7d ≥ 4 <span class="muted">(was 5)</span>' in html
    assert "active_days_30d" in html  # every metric, in a table


def test_a_workspace_without_usage_says_so(evaluated: World):
    html = page_for(evaluated.admin, "/reps/workspaces/ws_bo/")
    assert "No usage in the last 30 days." in html and 'data-chart="usage-figure"' not in html
    assert "Stage: <strong>Onboarding</strong>" in html


def test_the_list_filters_by_cohort_and_stage_and_shows_last_active(evaluated: World):
    everyone = page_for(evaluated.admin, "/reps/workspaces/")
    assert '<th scope="col">Stage</th>' in everyone and "Last active" in everyone
    in_cohort = page_for(evaluated.admin, "/reps/workspaces/", cohort="feature_shallow_frequent")
    assert "ws_ann" in in_cohort and "ws_bo" not in in_cohort
    onboarding = page_for(evaluated.admin, "/reps/workspaces/", stage="onboarding")
    assert "ws_bo" in onboarding and "ws_ann" not in onboarding
    by_activity = page_for(evaluated.admin, "/reps/workspaces/", sort="active")
    assert by_activity.index("ws_ann") < by_activity.index("ws_bo")
    csv = Client()
    csv.force_login(evaluated.admin)
    exported = b"".join(csv.get("/reps/workspaces/", {"export": "csv", "stage": "activated"}).streaming_content)
    assert b"stage,last_active_utc" in exported and b"ws_ann" in exported and b"Activated" in exported


def test_a_rep_sees_the_customers_they_own(evaluated: World):
    evaluated.ws_nobody.owner = evaluated.bo
    evaluated.ws_nobody.save(update_fields=["owner"])
    assert "ws_nobody" in page_for(evaluated.bo, "/reps/workspaces/")
    assert "Nobody Inc" in page_for(evaluated.bo, "/reps/workspaces/ws_nobody/")
