"""Child process of test_wal.py: a file-based SQLite database, one person stored, processed and erased.

Prints one JSON line per stage with what the `-wal` file and the database file hold, read from disk while
this process (and an idle second connection, as the web and task processes keep) still has the database
open: SQLite removes the WAL when the last connection closes, which would hide the problem.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from events.models import Event  # noqa: E402
from privacy.services import data_request_carry_out, data_request_create  # noqa: E402
from processing.pipeline import workspace_process  # noqa: E402

EMAIL = "Wanda.Lowell@Example-Logistics.io"


def on_disk(path: str) -> dict[str, object]:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return {"size": None, "address": False}
    return {"size": len(data), "address": EMAIL.lower().encode() in data.lower()}


def stage(name: str) -> None:
    database = connection.settings_dict["NAME"]
    print(json.dumps({"stage": name, "wal": on_disk(f"{database}-wal"), "db": on_disk(database)}), flush=True)


def main() -> None:
    call_command("migrate", verbosity=0)
    other = sqlite3.connect(connection.settings_dict["NAME"])  # another process's idle connection
    other.execute("SELECT count(*) FROM events_event").fetchone()
    now = timezone.now()
    data = {"workspace_id": "ws_wal", "email": EMAIL, "first_name": "Wanda", "last_name": "Lowell",
            "workspace_name": "Wanda's workspace", "company": "Example Logistics"}  # fmt: skip
    Event.objects.create(
        source=Event.Source.PROVISIONING,
        external_id="msg_wal_1",
        type="trial.started",
        occurred_at=now,
        workspace_key="ws_wal",
        payload={"type": "trial.started", "timestamp": now.isoformat(), "data": data},
    )
    workspace_process(workspace_key="ws_wal")
    stage("stored")
    request = data_request_create(kind="erase", email=EMAIL, requested_by_name="wal test")
    data_request_carry_out(data_request=request)
    stage("erased")
    other.close()


if __name__ == "__main__":
    main()
