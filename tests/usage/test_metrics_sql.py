"""The array literals the metric statements and the refresh send PostgreSQL instead of Python lists."""

from __future__ import annotations

import pytest
from django.db import connection

from usage.metrics_sql import array_literal

pytestmark = pytest.mark.django_db

AWKWARD = ["ws_1", 'a"b', "c\\d", "e,f", "{g}", " h ", "", "NULL", 'i\\"j']


def test_array_literal_quotes_every_value() -> None:
    """Plain values are quoted without escaping; an empty list is the empty array."""
    assert array_literal(["ws_1", "2026-12-07"]) == '{"ws_1","2026-12-07"}'
    assert array_literal([]) == "{}"
    assert array_literal(iter(["x"])) == '{"x"}'
    assert array_literal(['a"b']) == '{"a\\"b"}'  # a lone value's quote is escaped too


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the literal is read by PostgreSQL only")
def test_array_literal_reads_back_as_the_same_values_in_postgresql() -> None:
    """Quotes, backslashes, commas, braces, spaces, empty text and the word NULL all come back unchanged."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s::text[], %s::text[]", [array_literal(AWKWARD), array_literal([])])
        values, empty = cursor.fetchone()
    assert values == AWKWARD
    assert empty == []
