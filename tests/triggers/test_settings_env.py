"""The triggers' caps and quiet hours and the dispatch retries come from the environment, checked at start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHOW = (
    "import config.settings as s; print(s.TRIGGERS_WORKSPACE_CAP, s.TRIGGERS_PERSON_CAP, s.TRIGGERS_QUIET_HOURS, "
    "s.DISPATCH_LEASE_SECONDS, s.DISPATCH_MAX_ATTEMPTS)"
)


def settings_with(**extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRIGGERS_", "DISPATCH_", "DJANGO_"))}
    env.update(DEBUG="on", ENV_FILE="", **extra)
    return subprocess.run([sys.executable, "-c", SHOW], cwd=ROOT, env=env, capture_output=True, text=True)


def test_defaults_and_values_from_the_environment():
    assert settings_with().stdout.split("\n")[0] == "(3, 86400) (3, 86400) ('21:00', '08:00') 300.0 6"
    chosen = settings_with(
        TRIGGERS_WORKSPACE_CAP="5/3600", TRIGGERS_PERSON_CAP="off", TRIGGERS_QUIET_HOURS="22:30-07:15",
        DISPATCH_LEASE_SECONDS="120", DISPATCH_MAX_ATTEMPTS="3",
    )  # fmt: skip
    assert chosen.stdout.split("\n")[0] == "(5, 3600) None ('22:30', '07:15') 120.0 3"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("TRIGGERS_WORKSPACE_CAP", "3 a day", "TRIGGERS_WORKSPACE_CAP must be N/SECONDS"),
        ("TRIGGERS_PERSON_CAP", "0/86400", "TRIGGERS_PERSON_CAP must be N/SECONDS"),
        ("TRIGGERS_QUIET_HOURS", "9pm-8am", "TRIGGERS_QUIET_HOURS must be HH:MM-HH:MM"),
    ],
)
def test_a_bad_value_stops_the_start_naming_the_variable(name: str, value: str, message: str):
    out = settings_with(**{name: value})

    assert out.returncode != 0
    assert message in out.stderr
