"""Retry timing: prompt first retry (freshness), yet attempts that outlast a short outage."""

from __future__ import annotations

from salesforce.policy import backoff


def test_the_first_retry_comes_within_a_quarter_second_and_the_second_after_seconds():
    assert all(0.1 <= backoff(1).total_seconds() <= 0.25 for _ in range(50))
    assert all(1.5 <= backoff(2).total_seconds() <= 3.0 for _ in range(50))


def test_retries_before_a_dead_letter_span_minutes_not_seconds(settings):
    floor = sum(backoff(n).total_seconds() for n in range(1, settings.SALESFORCE_MAX_ATTEMPTS))
    assert floor >= 0.5 * 1092 >= 9 * 60, "half of 3+9+…+729 s at least: ride out a 9-minute outage"


def test_backoff_is_capped():
    assert backoff(50).total_seconds() <= 1800


def test_rows_that_failed_together_share_their_delay():
    assert backoff(1, jitter=0.0).total_seconds() == 0.1
    assert backoff(1, jitter=1.0).total_seconds() == 0.25
    assert backoff(2, jitter=0.5) == backoff(2, jitter=0.5) == backoff(2, jitter=0.5)
    assert backoff(3, jitter=0.0).total_seconds() == 4.5
