"""An existing database, populated at the commit before the apps were restructured (d253482, issue 20),
migrates forward with the current code and loses nothing.

The fixture of the suite's vendor (tests/migrations/fixtures, made by make_fixture.py) is restored into a
database of its own — a copied SQLite file, or a fresh PostgreSQL database `lc_fwd_<pid>` made and dropped
here — and `manage.py migrate` of this checkout runs against it in a subprocess, as an operator's upgrade
would. check_forward.py then reads it with the current models and compares it with the fixture's description.
One restore and one migrate per run (a module-scoped fixture); every test reads their results.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
FIXTURES = HERE / "fixtures"
#: What the old code was run with to make the fixture (make_fixture.ENVIRONMENT), for the current code too.
ENVIRONMENT = {
    "DJANGO_SETTINGS_MODULE": "config.settings",
    "DEBUG": "1",
    "ENV_FILE": "",
    "PRIVACY_HASH_SALT": "pre-layers-fixture-salt",
}
TIMEOUT = 600


@dataclass
class Run:
    """A finished command: its exit code and everything it printed."""

    command: str
    returncode: int
    stdout: str
    stderr: str

    def failure(self) -> str:
        return f"`{self.command}` exited {self.returncode}:\n{self.stdout[-3000:]}\n{self.stderr[-3000:]}"


@dataclass
class Forward:
    """The results of migrating one copy of the fixture."""

    migrate: Run
    checker: Run
    migrate_check: Run
    makemigrations_check: Run

    def findings(self) -> dict[str, Any]:
        """The checker's JSON; fails the test with the command's output when migrate or the checker broke."""
        assert self.migrate.returncode == 0, self.migrate.failure()
        assert self.checker.returncode == 0, self.checker.failure()
        return json.loads(self.checker.stdout)  # warnings of the system checks go to stderr


def run(args: list[str], database_url: str, **kwargs: Any) -> Run:
    """Run a command of this checkout against the given database, as an operator would (not under pytest)."""
    env = {**os.environ, **ENVIRONMENT, "DATABASE_URL": database_url}
    done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT, **kwargs)
    return Run(" ".join(args[1:]), done.returncode, done.stdout, done.stderr)


def run_checked(args: list[str], database_url: str, **kwargs: Any) -> None:
    """Run a set-up command that must succeed."""
    result = run(args, database_url, **kwargs)
    assert result.returncode == 0, result.failure()


def is_postgres() -> bool:
    return os.environ.get("DATABASE_URL", "").startswith(("postgres:", "postgresql:", "postgres+", "pgsql:"))


@pytest.fixture(scope="module")
def restored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A database holding the fixture of the suite's vendor: (its DATABASE_URL, the fixture's description)."""
    if not is_postgres():
        database = tmp_path_factory.mktemp("forward") / "pre_layers.sqlite3"
        with gzip.open(FIXTURES / "pre_layers.sqlite3.gz", "rb") as packed, database.open("wb") as raw:
            shutil.copyfileobj(packed, raw)
        yield f"sqlite:///{database}", FIXTURES / "pre_layers.sqlite.json"
        return
    parts = urlsplit(os.environ["DATABASE_URL"])
    name = f"lc_fwd_{os.getpid()}"
    server = urlunsplit(parts._replace(path="/postgres"))
    database_url = urlunsplit(parts._replace(path=f"/{name}"))
    psql = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1"]
    run_checked([*psql, server, "-c", f'DROP DATABASE IF EXISTS "{name}"', "-c", f'CREATE DATABASE "{name}"'], "")
    try:
        sql = gzip.decompress((FIXTURES / "pre_layers.postgres.sql.gz").read_bytes()).decode()
        run_checked([*psql, database_url], "", input=sql)
        yield database_url, FIXTURES / "pre_layers.postgres.json"
    finally:
        run_checked([*psql, server, "-c", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'], "")


@pytest.fixture(scope="module")
def forward(restored: tuple[str, Path]) -> Forward:
    """Migrate the restored database with this checkout, then check it and ask whether anything is pending."""
    database_url, description = restored
    manage = [sys.executable, "manage.py"]
    migrate = run([*manage, "migrate", "--no-input"], database_url)
    checker = run([sys.executable, str(HERE / "check_forward.py"), str(description)], database_url)
    return Forward(
        migrate=migrate,
        checker=checker,
        migrate_check=run([*manage, "migrate", "--check"], database_url),
        makemigrations_check=run([*manage, "makemigrations", "--check", "--dry-run"], database_url),
    )


def assert_none(findings: dict[str, Any], check: str) -> None:
    """The check found nothing wrong; otherwise say everything it found, one line each."""
    problems = findings["problems"][check]
    assert problems == [], f"{check}: {len(problems)} problems:\n" + "\n".join(problems)


def description_of(restored: tuple[str, Path]) -> dict[str, Any]:
    return json.loads(restored[1].read_text())


def test_every_table_keeps_its_rows(forward: Forward, restored: tuple[str, Path]) -> None:
    findings = forward.findings()
    assert_none(findings, "counts")
    assert findings["checked"]["counts"] == len(description_of(restored)["tables"])


def test_moved_models_read_at_their_new_labels_with_their_data(forward: Forward, restored: tuple[str, Path]) -> None:
    findings = forward.findings()
    assert_none(findings, "rows")
    saved = description_of(restored)["models"]
    assert findings["checked"]["rows"] == sum(len(model["rows"]) for model in saved.values())


def test_content_types_follow_the_models_without_stale_ones(forward: Forward) -> None:
    findings = forward.findings()
    assert_none(findings, "content_types")
    assert findings["checked"]["content_types"] > 0


def test_groups_and_users_keep_their_permissions(forward: Forward, restored: tuple[str, Path]) -> None:
    findings = forward.findings()
    assert_none(findings, "permissions")
    saved = description_of(restored)
    granted = sum(len(g["permissions"]) for g in saved["groups"].values())
    assert findings["checked"]["permissions"] == granted + sum(len(p) for p in saved["user_permissions"].values())


def test_audit_entries_of_the_moved_review_items_resolve(forward: Forward, restored: tuple[str, Path]) -> None:
    findings = forward.findings()
    assert_none(findings, "audit_entries")
    assert findings["checked"]["audit_entries"] == len(description_of(restored)["audit_entries"]["linking.reviewitem"])


def test_every_schedule_imports(forward: Forward, restored: tuple[str, Path]) -> None:
    findings = forward.findings()
    assert_none(findings, "schedules")
    assert findings["checked"]["schedules"] >= len(description_of(restored)["schedules"])


def test_nothing_is_pending_after_migrate(forward: Forward) -> None:
    assert forward.migrate.returncode == 0, forward.migrate.failure()
    assert forward.migrate_check.returncode == 0, forward.migrate_check.failure()
    assert forward.makemigrations_check.returncode == 0, forward.makemigrations_check.failure()
    assert "No changes detected" in forward.makemigrations_check.stdout
