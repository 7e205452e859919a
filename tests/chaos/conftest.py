"""Fixtures both chaos tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connection

from tests.chaos.harness import ScratchDatabase


@pytest.fixture
def scratch(django_db_blocker) -> Iterator[ScratchDatabase]:
    """A database of its own on the test run's PostgreSQL server, for the engine's processes; dropped after."""
    if connection.vendor != "postgresql":
        pytest.skip("the chaos test runs on PostgreSQL (set DATABASE_URL=postgres://…)")
    params = connection.settings_dict
    database = ScratchDatabase(
        {"host": params["HOST"] or "127.0.0.1", "port": params["PORT"] or 5432, "user": params["USER"] or "postgres"}
    )
    database.create()
    try:
        yield database
    finally:
        database.drop()
