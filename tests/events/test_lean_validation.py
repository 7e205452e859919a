"""The webhook's lean field checks (events/schemas.py run_schema) answer exactly as DRF's fields do: the same
validated data and, for anything wrong, the same error messages under the same names (the 422 body)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events.jsonbody import PayloadInvalid, _OutOfRange
from events.lean import _fields_of, run_schema, run_schema_drf
from events.schemas import EVENT_TYPES, EnvelopeSerializer, parse_provisioning_body

SCHEMAS = [EnvelopeSerializer, *(event_type.schema for event_type in EVENT_TYPES.values())]

#: Values a sender might put in any field: right and wrong types, padding, blanks, bounds, the characters no
#: database holds, e-mail, instant, decimal, choice and zone shapes.
TEXTS = st.sampled_from(
    [
        "",
        "   ",
        "ws_1",
        "  ws_1  ",
        "dana@acme.io",
        " dana@acme.io ",
        "dana@",
        "not an email",
        "2026-11-20T14:03:11Z",
        "2026-11-20T14:03:11",
        "1969-12-31T23:59:59Z",
        "9999-12-31T23:59:59-14:00",
        "297.00",
        "297",
        "-1",
        "12345678901.5",
        "1.234",
        "NaN",
        "month",
        "Month",
        "success",
        "urgent",
        "usd",
        "US",
        "Europe/Berlin",
        "UTC",
        "Mars/Olympus",
        "../../etc/passwd",
        "a\x00b",
        "a\ud800b",
        "x" * 64,
        "x" * 65,
        "x" * 300,
    ]
)
VALUES = st.one_of(
    TEXTS,
    st.text(max_size=20),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.sampled_from([0, 1, 5, 6, 10**9, 10**9 + 1, -1, True, False, None]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.just(_OutOfRange("1" * 30)),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def payloads(schema: type) -> st.SearchStrategy[dict[str, Any]]:
    """Dicts over the schema's own field names (each present or not) and a stray key."""
    names = [*_fields_of(schema), "unexpected"]
    return st.dictionaries(st.sampled_from(names), VALUES, max_size=len(names))


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda schema: schema.__name__)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_lean_checks_answer_as_drf_does(schema: type, data: st.DataObject) -> None:
    payload = data.draw(payloads(schema))
    assert run_schema(schema, payload, "data") == run_schema_drf(schema, payload, "data")


def test_valid_event_keeps_drf_types_and_trimming() -> None:
    schema = EVENT_TYPES["subscription.converted"].schema
    validated, errors = run_schema(schema, {"workspace_id": " ws_1 ", "plan": "team", "mrr": "297", "email": ""})
    assert errors == {}
    assert validated == {
        "workspace_id": "ws_1",
        "email": "",
        "plan": "team",
        "mrr": Decimal("297.00"),
        "currency": "USD",
    }
    envelope, _ = run_schema(EnvelopeSerializer, {"type": "x", "timestamp": "2026-11-20T15:03:11+01:00", "data": {}})
    assert envelope["timestamp"] == datetime(2026, 11, 20, 14, 3, 11, tzinfo=UTC)


def test_the_422_fields_still_name_each_wrong_field() -> None:
    body = b'{"type": "usage.recorded", "timestamp": "2026-11-20T14:03:11Z", "data": {"feature": " ", "count": -1}}'
    with pytest.raises(PayloadInvalid) as refused:
        parse_provisioning_body(body)
    assert refused.value.fields == {
        "data.workspace_id": ["This field is required."],
        "data.feature": ["This field may not be blank."],
        "data.count": ["Ensure this value is greater than or equal to 0."],
    }
