"""Commands started beside a running demo find its database; nothing else changes what they use."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from config.devenv import demo_env_write, running_demo_env

REPO = Path(__file__).resolve().parents[2]
PRINT_DATABASE = "from django.conf import settings; print(settings.DATABASES['default']['NAME'])"


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )


def _clean_env(data_dir: Path) -> dict[str, str]:
    env = {**os.environ, "ENV_FILE": "", "DEBUG": "on", "DEMO_DATA_DIR": str(data_dir)}
    env.pop("DATABASE_URL", None)
    return env


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_command_beside_a_running_demo_uses_its_database_and_keys(tmp_path: Path) -> None:
    database = tmp_path / "demo.sqlite3"
    demo_env_write(tmp_path, {"DATABASE_URL": f"sqlite:///{database}"}, pid=os.getpid())
    assert (tmp_path / "running.env").stat().st_mode & 0o077 == 0, "owner-only: it holds the demo's keys"

    result = _manage("shell", "--no-imports", "-c", PRINT_DATABASE, env=_clean_env(tmp_path))

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(database)
    assert f"Using the running demo's database and settings ({tmp_path / 'running.env'}" in result.stderr


def test_a_stopped_demo_is_ignored(tmp_path: Path) -> None:
    demo_env_write(tmp_path, {"DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}"}, pid=_dead_pid())
    assert running_demo_env(tmp_path) is None

    result = _manage("shell", "--no-imports", "-c", PRINT_DATABASE, env=_clean_env(tmp_path))

    assert result.stdout.strip() == str(REPO / "db.sqlite3")
    assert "demo" not in result.stderr


def test_a_database_url_of_your_own_wins_over_the_demo(tmp_path: Path) -> None:
    demo_env_write(tmp_path, {"DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}"}, pid=os.getpid())
    mine = tmp_path / "mine.sqlite3"

    result = _manage(
        "shell", "--no-imports", "-c", PRINT_DATABASE, env={**_clean_env(tmp_path), "DATABASE_URL": f"sqlite:///{mine}"}
    )

    assert result.stdout.strip() == str(mine)


def test_commands_print_no_axes_banner(tmp_path: Path) -> None:
    """django-axes announced itself ("AXES: BEGIN version …") on stderr at every command's start."""
    env = {**_clean_env(tmp_path), "AXES_ENABLED": "on"}

    result = _manage("sign_webhook", "--help", env=env)

    assert result.returncode == 0
    assert "AXES" not in result.stderr, result.stderr
