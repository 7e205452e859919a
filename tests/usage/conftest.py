"""The shipped cohorts and stages are data a migration installs; a transactional test elsewhere flushes
them, so each database test here starts with them present (loaded from the same file when they are gone)."""

from __future__ import annotations

import pytest

from usage.definitions import definitions_load, shipped_document
from usage.models import Cohort, Stage


@pytest.fixture(autouse=True)
def shipped_definitions(request: pytest.FixtureRequest) -> None:
    if "transactional_db" in request.fixturenames:
        request.getfixturevalue("transactional_db")
    elif request.node.get_closest_marker("django_db") or "db" in request.fixturenames:
        request.getfixturevalue("db")
    else:
        return
    if not Cohort.objects.exists() or not Stage.objects.exists():
        definitions_load(shipped_document())
