"""A separate worker process for the crash tests: `python crash_worker.py MODE` against DATABASE_URL.

Modes: `store` (two lifecycle events for ws_kill), `hang` (claim ws_kill's events, say so, then
stall inside the fold until killed), `status` (print event statuses as JSON), `recover` (run the
sweeper, then the task it enqueued, and print the sweeper's counts).
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from events.models import Event  # noqa: E402
from processing import pipeline  # noqa: E402
from processing.sweeper import events_sweep  # noqa: E402
from processing.tasks import process_workspaces  # noqa: E402
from tests.events.helpers import T0, lifecycle_event, store  # noqa: E402


def hang() -> None:
    def stall(workspace_key: str) -> int:
        print("claimed", flush=True)
        time.sleep(600)
        return 0

    pipeline._fold_and_apply = stall
    pipeline.workspace_process(workspace_key="ws_kill")


def main(mode: str) -> None:
    if mode == "store":
        store(
            lifecycle_event("k1", "trial.started", workspace_id="ws_kill"),
            lifecycle_event("k2", "subscription.converted", workspace_id="ws_kill", at=T0 + timedelta(days=1)),
        )
    elif mode == "hang":
        hang()
    elif mode == "status":
        print(json.dumps(dict(Event.objects.values_list("external_id", "status"))))
    elif mode == "recover":
        counts = events_sweep()
        process_workspaces(["ws_kill"])
        print(json.dumps(counts))


if __name__ == "__main__":
    main(sys.argv[1])
