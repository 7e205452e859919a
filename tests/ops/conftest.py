"""Every ops test runs as a process that started long ago: past /healthz's start-up grace."""

from __future__ import annotations

import time

import pytest

from ops import health


@pytest.fixture(autouse=True)
def long_running(monkeypatch):
    """Past HEALTH_STARTUP_GRACE_SECONDS, and no /healthz state logged yet by this process."""
    monkeypatch.setattr(health, "process_started_at", time.monotonic() - 86_400)
    monkeypatch.setattr(health, "_last_state", None)
