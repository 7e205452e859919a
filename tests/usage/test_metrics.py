"""Usage profile metrics: window edges, trends, zones, the rollup writers, the registry."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.factories import EventFactory, WorkspaceFactory
from usage import metrics
from usage.metrics import METRICS, RollupEvent, plan_limits_rollup, profiles_all, profiles_for, tickets_apply
from usage.models import PlanLimitDaily, SupportTicket
from usage.rollups import usage_rollup

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
TODAY = NOW.date()


def use(at: datetime, key: str = "ws_1", **data: Any) -> None:
    """A stored `usage.recorded` event, rolled up by the real rollup."""
    data = {"workspace_id": key, "feature": "sign", **data}
    EventFactory(
        type="usage.recorded",
        occurred_at=at,
        workspace_key=key,
        payload={"type": "usage.recorded", "timestamp": at.isoformat(), "data": data},
    )
    assert usage_rollup() == 1


def on(day: date, hour: int = 12) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def days_ago(n: int) -> date:
    return TODAY - timedelta(days=n)


def profile(key: str = "ws_1", now: datetime = NOW, zones: dict[str, str] | None = None) -> dict[str, Any]:
    return profiles_for([key], now=now, zones=zones)[key]


def opened(key: str, ticket: str, at: datetime, priority: str = "normal") -> RollupEvent:
    return RollupEvent(key, at, {"ticket_id": ticket, "priority": priority}, type="support.ticket_opened")


def resolved(key: str, ticket: str, at: datetime, satisfaction: int | None = None) -> RollupEvent:
    return RollupEvent(key, at, {"ticket_id": ticket, "satisfaction": satisfaction}, type="support.ticket_resolved")


def test_no_usage_window_is_longer_than_the_one_that_keeps_a_profile_due():
    """`windows_hold_data` stops visiting a workspace once it was last active USAGE_WINDOW_DAYS ago: a longer
    window over usage rows would then go stale."""
    from usage.metrics import METRICS, USAGE_WINDOW_DAYS

    # Over ticket and plan-limit rows: kept due by their own counts (the ratio is made of two of them).
    over_rows = {"tickets_14d", "tickets_baseline_60d", "ticket_ratio_14d", "plan_limit_hits_30d"}
    longest = max(m.window_days or 0 for name, m in METRICS.items() if name not in over_rows)
    assert longest == USAGE_WINDOW_DAYS


def test_a_window_of_n_days_is_today_and_the_n_minus_1_days_before():
    # given
    for n in (0, 6, 7, 29, 30):
        use(on(days_ago(n)))
    # when
    values = profile()
    # then
    assert values["active_days_7d"] == 2  # today and 6 days ago; 7 days ago is out
    assert values["active_days_30d"] == 4  # 30 days ago is out


def test_days_after_today_count_nowhere():
    # given: a clock behind the data
    use(on(days_ago(3)))
    use(on(TODAY + timedelta(days=1)))
    # when
    values = profile()
    # then
    assert values["active_days_7d"] == 1
    assert values["days_since_last_active"] == 3
    assert values["last_active_at"] == int(on(days_ago(3)).timestamp())


def test_a_session_is_one_user_on_one_day():
    # given
    use(on(TODAY, 9), user_email="ann@acme.io")
    use(on(TODAY, 10), user_email="Ann@Acme.io", feature="export", product="esign")
    use(on(TODAY, 11), user_email="bob@acme.io")
    use(on(days_ago(1)), user_email="ann@acme.io")
    use(on(days_ago(2)))  # no user: activity, but no session
    # when
    values = profile()
    # then
    assert values["sessions_7d"] == 3
    assert values["seats_30d"] == 2
    assert values["active_days_7d"] == 3


def test_trend_is_none_when_the_previous_14_days_are_empty():
    # given
    use(on(days_ago(13)), user_email="ann@acme.io", duration_seconds=60)
    # when
    values = profile()
    # then
    assert values["sessions_trend_14d"] is None
    assert values["duration_trend_14d"] is None
    assert values["duration_28d"] == 60.0


def test_trend_is_the_relative_change_against_the_previous_14_days():
    # given: previous 14 days (27..14 ago) 2 sessions and 100 s; this 14 days 3 sessions and 25 s
    use(on(days_ago(27)), user_email="ann@acme.io", duration_seconds=40)
    use(on(days_ago(14)), user_email="ann@acme.io", duration_seconds=60)
    use(on(days_ago(28)), user_email="ann@acme.io", duration_seconds=1000)  # before both
    for n, seconds in ((13, 10), (5, 10), (0, 5)):
        use(on(days_ago(n)), user_email="bob@acme.io", duration_seconds=seconds)
    # when
    values = profile()
    # then
    assert values["sessions_trend_14d"] == 0.5
    assert values["duration_trend_14d"] == -0.75


def test_depth_products_api_share_and_integrations():
    # given
    use(on(TODAY), product="esign", feature="sign")
    use(on(TODAY), product="esign", feature="send")
    use(on(TODAY), product="admin", feature="sign")
    use(on(TODAY), product="api", feature="integration.slack")
    use(on(TODAY), product="api", feature="integration.hubspot", outcome="error")  # never succeeded
    use(on(TODAY), product="sdk", feature="Integration.zapier")  # the prefix is lower-case
    use(on(TODAY), product="mobile", feature="sign")
    use(on(TODAY), feature="sign")  # no product
    # when
    values = profile()
    # then
    assert (values["depth_esign_30d"], values["depth_admin_30d"], values["depth_api_30d"]) == (2, 1, 2)
    assert values["features_30d"] == 8  # (product, feature) pairs: "sign" in four products counts four times
    assert values["products_used_30d"] == 5
    assert values["api_share_30d"] == 2 / 8
    assert values["integration_depth_30d"] == 1
    assert values["errors_7d"] == 1


def test_a_profile_without_any_data_is_zeros_and_empties():
    values = profile("ws_unknown")
    assert values["active_days_30d"] == 0
    assert values["api_share_30d"] is None
    assert values["days_since_last_active"] is None
    assert values["ticket_ratio_14d"] is None


def test_today_is_counted_in_the_workspace_zone():
    # given: 23:30 UTC is already tomorrow in Berlin
    late = datetime(2026, 12, 7, 23, 30, tzinfo=UTC)
    for key in ("ws_utc", "ws_berlin"):
        use(on(date(2026, 12, 1)), key=key)
    zones = {"ws_berlin": "Europe/Berlin"}
    # when
    berlin = profile("ws_berlin", late, zones)
    utc = profile("ws_utc", late, zones)
    # then: Berlin's 7 days are Dec 2-8, UTC's Dec 1-7
    assert (berlin["active_days_7d"], utc["active_days_7d"]) == (0, 1)
    assert (berlin["days_since_last_active"], utc["days_since_last_active"]) == (7, 6)


def test_workspaces_in_different_zones_keep_their_own_windows_in_one_evaluation():
    # given: at noon UTC Kiritimati (+14) is already on Dec 8, so its 30 days start a day after UTC's
    zones = {"ws_east": "Pacific/Kiritimati"}
    for key in ("ws_utc", "ws_east"):
        use(on(days_ago(29)), key=key, user_email="ann@acme.io")
    # when
    values = profiles_for(["ws_utc", "ws_east"], now=NOW, zones=zones)
    # then
    assert (values["ws_utc"]["sessions_28d"], values["ws_utc"]["seats_30d"]) == (0, 1)
    assert (values["ws_east"]["seats_30d"], values["ws_east"]["active_days_30d"]) == (0, 0)
    assert values["ws_utc"]["active_days_30d"] == 1


def test_ticket_windows_start_at_local_midnight():
    # given: Berlin's day Nov 24 (13 days before Dec 7) starts at Nov 23, 23:00 UTC
    tickets_apply(
        [
            opened("ws_1", "before", datetime(2026, 11, 23, 22, 59, 59, tzinfo=UTC)),
            opened("ws_1", "first", datetime(2026, 11, 23, 23, 0, tzinfo=UTC)),
        ]
    )
    # when
    berlin = profile(zones={"ws_1": "Europe/Berlin"})
    utc = profile()
    # then
    assert (berlin["tickets_14d"], berlin["tickets_baseline_60d"]) == (1, 1)
    assert (utc["tickets_14d"], utc["tickets_baseline_60d"]) == (0, 2)


def test_open_tickets_are_open_now():
    # given
    tickets_apply(
        [
            opened("ws_1", "open", NOW - timedelta(days=100)),
            opened("ws_1", "resolved_now", NOW - timedelta(days=1)),
            resolved("ws_1", "resolved_now", NOW),
            opened("ws_1", "resolved_later", NOW - timedelta(days=1)),
            resolved("ws_1", "resolved_later", NOW + timedelta(seconds=1)),
            opened("ws_1", "opened_later", NOW + timedelta(seconds=1)),
            resolved("ws_1", "never_opened", NOW - timedelta(days=1)),
        ]
    )
    # when / then
    assert profile()["open_tickets"] == 2  # "open" and "resolved_later"


def test_ticket_ratio_compares_14_days_with_the_60_day_baseline_rate():
    # given: 3 tickets in the last 14 days, 6 in the 60 days before (1.4 per 14 days)
    events = [opened("ws_1", f"now_{n}", on(days_ago(n))) for n in (0, 5, 13)]
    events += [opened("ws_1", f"base_{n}", on(days_ago(n))) for n in (14, 20, 30, 40, 50, 73)]
    events.append(opened("ws_1", "too_old", on(days_ago(74))))
    tickets_apply(events)
    # when
    values = profile()
    # then
    assert (values["tickets_14d"], values["tickets_baseline_60d"]) == (3, 6)
    assert values["ticket_ratio_14d"] == pytest.approx(3 / (6 * 14 / 60))


def test_plan_limit_hits_are_counted_per_local_day():
    # given: 23:30 UTC on Nov 7 is Nov 8 in Berlin; 30 days ending Dec 7 start on Nov 8
    zones = {"ws_1": "Europe/Berlin"}
    hit = RollupEvent("ws_1", datetime(2026, 11, 7, 23, 30, tzinfo=UTC), {"limit": "seats"}, type="plan.limit_reached")
    in_utc = RollupEvent("ws_2", hit.occurred_at, {"limit": "seats"}, type="plan.limit_reached")
    # when
    plan_limits_rollup([hit, hit, in_utc], zones=zones)
    plan_limits_rollup([hit], zones=zones)
    # then
    row = PlanLimitDaily.objects.get(workspace_key="ws_1")
    assert (row.day, row.hits, row.last_hit_at) == (date(2026, 11, 8), 3, hit.occurred_at)
    assert PlanLimitDaily.objects.get(workspace_key="ws_2").day == date(2026, 11, 7)
    assert profile(zones=zones)["plan_limit_hits_30d"] == 3
    assert profile("ws_2", zones=zones)["plan_limit_hits_30d"] == 0  # Nov 7 is a day before the 30


def test_days_since_trial_start_counts_local_days():
    WorkspaceFactory(workspace_id="ws_1", trial_started_at=datetime(2026, 11, 30, 23, 30, tzinfo=UTC))
    assert profile()["days_since_trial_start"] == 7
    assert profile(zones={"ws_1": "Asia/Tokyo"})["days_since_trial_start"] == 6  # started Dec 1 in Tokyo


def test_an_unknown_zone_counts_in_utc():
    use(on(TODAY))
    assert profile(zones={"ws_1": "Mars/Olympus"}) == profile()


@pytest.mark.parametrize("zone", ["America/Santiago", "Europe/Berlin", "Asia/Kolkata", "Pacific/Kiritimati"])
def test_a_local_day_starts_at_its_first_instant_across_dst(zone: str):
    tz = ZoneInfo(zone)
    for day in (date(2026, 1, 1) + timedelta(days=n) for n in range(366)):
        start = metrics.day_start(day, tz)
        assert start.astimezone(tz).date() == day
        assert (start - timedelta(microseconds=1)).astimezone(tz).date() == day - timedelta(days=1)


def test_an_opening_after_its_resolution_keeps_the_resolution():
    # given
    tickets_apply([resolved("ws_1", "t1", NOW, satisfaction=4)])
    # when
    tickets_apply([opened("ws_1", "t1", NOW - timedelta(hours=2), priority="high")])
    # then
    ticket = SupportTicket.objects.get()
    assert (ticket.opened_at, ticket.priority) == (NOW - timedelta(hours=2), "high")
    assert (ticket.resolved_at, ticket.satisfaction) == (NOW, 4)


ticket_events = st.lists(
    st.builds(
        lambda is_open, ticket, minutes, value: (
            opened("ws_1", ticket, NOW + timedelta(minutes=minutes), ["low", "normal", "high", "urgent"][value % 4])
            if is_open
            else resolved("ws_1", ticket, NOW + timedelta(minutes=minutes), value or None)
        ),
        st.booleans(),
        st.sampled_from(["t1", "t2"]),
        st.integers(0, 3),
        st.integers(0, 5),
    ),
    max_size=12,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=ticket_events, seed=st.randoms(use_true_random=False))
def test_tickets_do_not_depend_on_the_order_or_batching_of_their_events(events: list[RollupEvent], seed: Any):
    def rows() -> list[tuple]:
        fields = ("ticket_id", "priority", "opened_at", "resolved_at", "satisfaction")
        return list(SupportTicket.objects.order_by("ticket_id").values_list(*fields))

    # given: all at once
    SupportTicket.objects.all().delete()
    tickets_apply(events)
    whole = rows()
    # when: shuffled, in random batches
    SupportTicket.objects.all().delete()
    shuffled = list(events)
    seed.shuffle(shuffled)
    while shuffled:
        size = seed.randint(1, 3)
        tickets_apply(shuffled[:size])
        shuffled = shuffled[size:]
    # then
    assert rows() == whole


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (RollupEvent("ws_1", NOW, {}, type="support.ticket_opened"), "data.ticket_id"),
        (
            RollupEvent("ws_1", NOW, {"ticket_id": "t", "priority": "asap"}, type="support.ticket_opened"),
            "data.priority",
        ),
        (
            RollupEvent("ws_1", NOW, {"ticket_id": "t", "satisfaction": 9}, type="support.ticket_resolved"),
            "satisfaction",
        ),
        (RollupEvent("ws_1", NOW, {"ticket_id": "t"}, type="usage.recorded"), "usage.recorded"),
    ],
)
def test_a_ticket_event_it_cannot_apply_is_refused_by_name_and_nothing_is_written(event: RollupEvent, field: str):
    with pytest.raises(ValueError, match=re.escape(field)):
        tickets_apply([opened("ws_1", "fine", NOW), event])
    assert not SupportTicket.objects.exists()


def test_a_limit_event_without_its_limit_is_refused():
    with pytest.raises(ValueError, match=r"data\.limit"):
        plan_limits_rollup([RollupEvent("ws_1", NOW, {}, type="plan.limit_reached")])
    assert not PlanLimitDaily.objects.exists()


def test_the_bulk_pass_visits_every_workspace_in_key_order_in_chunks():
    # given: workspaces known only to one table each
    use(on(TODAY), key="ws_c")
    tickets_apply([opened("ws_a", "t1", NOW)])
    plan_limits_rollup([RollupEvent("ws_d", NOW, {"limit": "seats"}, type="plan.limit_reached")])
    WorkspaceFactory(workspace_id="ws_b")
    WorkspaceFactory(workspace_id="ws_e")
    # when
    chunks = list(profiles_all(now=NOW, chunk=2))
    # then
    assert [list(chunk) for chunk in chunks] == [["ws_a", "ws_b"], ["ws_c", "ws_d"], ["ws_e"]]
    assert chunks[1]["ws_c"] == profile("ws_c")


def test_every_metric_is_registered_named_by_its_window_and_json_serialisable():
    # given
    use(on(TODAY), user_email="ann@acme.io", duration_seconds=1.5, product="api")
    # when
    values = profile()
    # then
    assert list(values) == list(METRICS)
    assert json.loads(json.dumps(values)) == values
    assert all(isinstance(value, int | float) or value is None for value in values.values())
    for name, metric in METRICS.items():
        assert re.fullmatch(r"[a-z0-9_]+", name) and metric.description and metric.unit
        if metric.window_days in (7, 14, 28, 30, 60):
            assert name.endswith(f"_{metric.window_days}d") or name.endswith("_14d"), name


def test_every_metric_has_its_formula_in_the_docs():
    doc = (Path(django_settings.BASE_DIR) / "docs" / "metrics.md").read_text()
    documented = set(re.findall(r"^\| `([a-z0-9_<>]+)` \|", doc, flags=re.MULTILINE))
    expected = {name for name in METRICS if not name.startswith("depth_")} | {"depth_<product>_30d"}
    assert documented == expected


def test_a_product_name_that_cannot_name_a_metric_is_refused(settings):
    settings.USAGE_PRODUCTS = ["esign", "Admin Suite"]
    with pytest.raises(ImproperlyConfigured, match="Admin Suite"):
        metrics._products()
