"""The engine's settings for the firings chaos test: `config.settings` (read from the same environment)
with the clocks of a one-minute test instead of production's.

Only configuration changes, never code: the dispatch lease and retry delays the engine reads from settings
(`messaging.delivery`), quiet hours and the caps across triggers off (`triggers.decide`: what fires must
not depend on the hour CI runs at, nor on which of two workers decided first), and the test's own message
templates (`templates/triggers/chaos_message.*`), which name the firing and channel of every message so
the stand-ins' records can be matched to the engine's rows.
"""

from __future__ import annotations

from pathlib import Path

from config.settings import *  # noqa: F403
from config.settings import TEMPLATES

TEMPLATES[0]["DIRS"] = [*TEMPLATES[0]["DIRS"], Path(__file__).resolve().parent / "templates"]

# A worker killed mid-send leaves its row leased: due again after this (production: 5 minutes).
DISPATCH_LEASE_SECONDS = 12.0
DISPATCH_RETRY_BASE_SECONDS = 1.0
DISPATCH_RETRY_MAX_SECONDS = 3.0
DISPATCH_MAX_ATTEMPTS = 8

TRIGGERS_QUIET_HOURS = None
TRIGGERS_WORKSPACE_CAP = None
TRIGGERS_PERSON_CAP = None
