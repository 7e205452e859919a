"""After an erasure on SQLite the address is gone from the `-wal` file too, not only from the tables.

Real processes and a real database file: the WAL exists only for file databases, and only while a
connection is open (the child reads the bytes before it exits).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

WORKER = Path(__file__).with_name("wal_child.py")


def test_erasure_checkpoints_the_sqlite_wal_so_the_address_is_not_left_in_it(tmp_path):
    env = {
        **os.environ,
        "ENV_FILE": "",
        "DEBUG": "on",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'wal.sqlite3'}",
        "LOG_LEVEL": "WARNING",
    }
    result = subprocess.run([sys.executable, str(WORKER)], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    stages = {line["stage"]: line for line in map(json.loads, result.stdout.splitlines())}

    assert stages["stored"]["wal"]["address"] is True, "the test can fail: before erasure the WAL holds it"
    assert stages["erased"]["wal"] == {"size": 0, "address": False}  # before: the old pages, address and all
    assert stages["erased"]["db"]["address"] is False
