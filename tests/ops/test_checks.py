"""System checks for the monitoring settings: each names the variable and how to fix it."""

from __future__ import annotations

import pytest

from config import checks


def ids(messages) -> set[str]:
    return {message.id for message in messages}


def test_defaults_pass(settings):
    settings.METRICS_TOKEN = ""
    assert checks.check_ops(None) == []


@pytest.mark.parametrize(("token", "ok"), [("short-token", False), ("x" * 24, True)])
def test_a_short_metrics_token_counts_as_none_with_a_warning(settings, token, ok):
    """An optional secret (CONTRACT §1): weak is a warning, never an error that stops the engine."""
    settings.METRICS_TOKEN = token
    warned = [m for m in checks.check_webhook_secrets(None) if "METRICS_TOKEN" in m.msg]
    assert (warned == []) is ok
    assert all(type(m).__name__ == "Warning" for m in warned)
    assert checks.check_ops(None) == []


def test_heartbeat_limits_shorter_than_the_beat_are_refused(settings):
    settings.HEALTH_SWEEPER_HEARTBEAT_MAX_AGE_SECONDS = 60

    [error] = checks.check_ops(None)

    assert error.id == "lifecycle.E051"
    assert "HEALTH_SWEEPER_HEARTBEAT_MAX_AGE_SECONDS=60" in error.msg


@pytest.mark.parametrize("name", ["SLA_EVENT_SECONDS", "ERROR_ALERT_WINDOW_MINUTES", "OPS_WINDOW_MINUTES"])
def test_windows_and_slas_must_be_positive(settings, name):
    setattr(settings, name, 0)
    [error] = checks.check_ops(None)
    assert error.id == "lifecycle.E052" and name in error.msg


def test_a_silence_factor_under_one_is_refused(settings):
    settings.SLA_SOURCE_SILENCE_FACTOR = 0.5
    assert ids(checks.check_ops(None)) == {"lifecycle.E053"}
