"""Hostile but correctly signed input, generated (CONTRACT §2, issue 18 item 8): nesting past 64 levels,
integers beyond 64 bits, non-finite numbers and dates outside 1970–2999, spliced into otherwise valid bodies
of all three webhooks. Each must be answered 422 naming where it is, and kept as one `rejected` event whose
payload the database holds; never a 5xx, never anything applied. The fixed cases these strategies grew
from are in tests/events/test_hostile_input.py."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.stripe_adapter import sign_payload
from events.jsonbody import TOO_DEEP, json_nesting_exceeds
from events.models import Event
from events.views import body_key
from tests.conftest import signed_headers
from tests.fuzz.conftest import MARKETO_TOKEN, STRIPE_SECRET
from tests.fuzz.schema import FUZZ_SETTINGS

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fuzz_settings")]

# --- strategies: JSON text, since NaN, 1e999 and 5,000 digits are what a serializer would never write ---

#: Arrays and objects nested 65 to 3,000 deep (Python's parser gives up near 1,000), opened any way.
deep_nesting = st.lists(st.sampled_from(["[", '{"k": ']), min_size=65, max_size=3000).map(
    lambda opens: "".join(opens) + "0" + "".join("]" if o == "[" else "}" for o in reversed(opens))
)
#: Integers beyond ±(2^63−1), up to past Python's 4,300-digit conversion limit.
huge_integers = st.one_of(
    st.integers(min_value=2**63).map(str),
    st.integers(max_value=-(2**63)).map(str),
    st.integers(min_value=4301, max_value=6000).map(lambda digits: "9" * digits),
)
#: What JSON has no number for; Python's parser takes them all (1e999 and its kin as ±inf).
non_finite = st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e400", "1E309", "123e4567"])
hostile_numbers = st.one_of(huge_integers, non_finite)


@st.composite
def extreme_instants(draw: st.DrawFn) -> str:
    """RFC 3339 text of an instant before 1970 or after 2999 (UTC), up to the overflowing corners."""
    offset = timedelta(minutes=draw(st.integers(-14 * 60, 14 * 60)))
    when = draw(
        st.one_of(
            st.datetimes(max_value=datetime(1969, 12, 31, 9, 59)),
            st.datetimes(min_value=datetime(3000, 1, 1, 14, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)),
        )
    )
    return when.replace(microsecond=0, tzinfo=timezone(offset)).isoformat()


extreme_unix_seconds = st.one_of(
    st.integers(max_value=-1), st.integers(min_value=int(datetime(3000, 1, 1, tzinfo=UTC).timestamp()))
)


def assert_kept_rejected(response: Any, field: str, source: str, *external_ids: str) -> None:
    """422 naming `field`, and one rejected event under one of the keys it may be kept by."""
    assert response.status_code == 422, response.content
    fields = response.json()["fields"]
    assert field in fields, fields
    event = Event.objects.get(source=source, external_id__in=external_ids)
    assert (event.status, event.occurred_at) == (Event.Status.REJECTED, None)
    assert not Event.objects.exclude(status=Event.Status.REJECTED).exists()


# --- provisioning --------------------------------------------------------------------------------

TRIAL_DATA = '"workspace_id": "ws_fuzz", "email": "dana@acme.io"'


@FUZZ_SETTINGS
@given(value=st.one_of(deep_nesting, hostile_numbers))
def test_provisioning_refuses_hostile_values_anywhere(send_webhook, value):
    deep = value[0] in "[{"
    body = '{"type": "trial.started", "timestamp": "2026-11-20T14:03:11Z", "data": {' + TRIAL_DATA
    body += ', "x": ' + value + "}}"
    msg_id = f"msg_{uuid.uuid4().hex}"

    response = send_webhook(body, msg_id=msg_id)

    assert_kept_rejected(response, "body" if deep else "data.x", "provisioning", msg_id)
    assert Event.objects.get(external_id=msg_id).payload == body  # kept as the text it was


@FUZZ_SETTINGS
@given(instant=extreme_instants(), field=st.sampled_from(["timestamp", "data.trial_expires_at"]))
def test_provisioning_refuses_dates_outside_1970_to_2999_in_any_date_field(send_webhook, instant, field):
    data = {"workspace_id": "ws_fuzz", "email": "dana@acme.io"}
    timestamp = "2026-11-20T14:03:11Z"
    if field == "timestamp":
        timestamp = instant
    else:
        data["trial_expires_at"] = instant
    msg_id = f"msg_{uuid.uuid4().hex}"

    response = send_webhook(json.dumps({"type": "trial.started", "timestamp": timestamp, "data": data}), msg_id=msg_id)

    assert_kept_rejected(response, field, "provisioning", msg_id)


# --- provisioning batches (CONTRACT §2b): the same rules, judged per event --------------------------------


def post_batch(client: Any, body: str, msg_id: str) -> Any:
    headers = signed_headers(body, msg_id=msg_id)
    return client.post("/webhooks/provisioning/batch/", data=body, content_type="application/json", headers=headers)


@FUZZ_SETTINGS
@given(
    value=st.one_of(deep_nesting, hostile_numbers),
    instant=extreme_instants(),
    position=st.integers(0, 2),
)
def test_batch_rejects_each_hostile_event_and_stores_its_neighbours(client, value, instant, position):
    """A hostile value in one event and a date out of range in another: those two are rejected, naming where,
    and kept as text the database holds; the valid one is stored. A body nested past what a batch parses at all
    (events/schemas.py _BATCH_DEPTH) is refused whole, like a deep single body."""
    tag = uuid.uuid4().hex
    good = json.dumps(
        {
            "id": f"ok_{tag}",
            "type": "trial.started",
            "timestamp": "2026-11-20T14:03:11Z",
            "data": {"workspace_id": "ws_fuzz", "email": "dana@acme.io"},
        }
    )
    hostile = (
        f'{{"id": "h_{tag}", "type": "trial.started", "timestamp": "2026-11-20T14:03:11Z", "data": {{'
        + TRIAL_DATA
        + ', "x": '
        + value
        + "}}"
    )
    dated = json.dumps(
        {
            "id": f"d_{tag}",
            "type": "trial.started",
            "timestamp": instant,
            "data": {"workspace_id": "ws_fuzz", "email": "dana@acme.io"},
        }
    )
    events = [good, dated]
    events.insert(position, hostile)
    body = '{"events": [' + ", ".join(events) + "]}"
    deep = value[0] in "[{"

    response = post_batch(client, body, f"batch_{tag}")

    if deep and json_nesting_exceeds(body.encode(), 4 * 64):
        assert response.status_code == 422, response.content
        assert response.json()["fields"] == {"body": [TOO_DEEP]}
        kept = dict(Event.objects.filter(external_id__endswith=tag).values_list("external_id", "status"))
        assert kept == {f"batch_{tag}": "rejected"}, "the batch kept as one rejected message, no event of it"
        return
    assert response.status_code == 202, response.content
    answer = response.json()
    assert (answer["accepted"], answer["duplicates"], answer["ignored"]) == (1, 0, 0)
    rejected = {item["id"]: item["fields"] for item in answer["rejected"]}
    assert set(rejected) == {f"h_{tag}", f"d_{tag}"}
    assert ("body" if deep else "data.x") in rejected[f"h_{tag}"]
    assert "timestamp" in rejected[f"d_{tag}"]
    kept = dict(Event.objects.filter(external_id__endswith=tag).values_list("external_id", "status"))
    assert kept == {f"ok_{tag}": "new", f"h_{tag}": "rejected", f"d_{tag}": "rejected"}
    assert isinstance(Event.objects.get(external_id=f"h_{tag}").payload, str), "kept as text"


# --- Marketo -------------------------------------------------------------------------------------


def post_marketo(client: Any, body: str) -> Any:
    headers = {"Authorization": f"Bearer {MARKETO_TOKEN}"}
    return client.post("/webhooks/marketo/", data=body, content_type="application/json", headers=headers)


@FUZZ_SETTINGS
@given(value=st.one_of(deep_nesting, hostile_numbers), instant=extreme_instants(), where=st.sampled_from("xd"))
def test_marketo_refuses_hostile_values_and_dates(client, value, instant, where):
    lead = '{"lead_id": "mk_fuzz", "email": "dana@acme.io", '
    body = lead + (f'"extra": {value}}}' if where == "x" else f'"created_at": "{instant}"}}')
    field = ("body" if value[0] in "[{" else "extra") if where == "x" else "created_at"

    response = post_marketo(client, body)

    assert_kept_rejected(response, field, "marketo", body_key(body.encode()))


# --- Stripe ---------------------------------------------------------------------------------------


def stripe_event(event_id: str, created: str = "1795400000", extra: str = "1", unit_amount: str = "9900") -> str:
    price = '{"id": "price_1", "lookup_key": "team", "currency": "usd", "recurring": {"interval": "month"}, '
    price += f'"unit_amount": {unit_amount}}}'
    subscription = (
        '{"id": "sub_1", "object": "subscription", "status": "active", "currency": "usd", '
        f'"metadata": {{"workspace_id": "ws_fuzz"}}, "items": {{"data": [{{"quantity": 1, "price": {price}}}]}}, '
        f'"extra": {extra}}}'
    )
    return (
        f'{{"id": "{event_id}", "type": "customer.subscription.created", "created": {created}, '
        f'"data": {{"object": {subscription}}}}}'
    )


def post_stripe(client: Any, body: str) -> Any:
    headers = {"Stripe-Signature": sign_payload(body, STRIPE_SECRET)}
    return client.post("/webhooks/stripe/", data=body, content_type="application/json", headers=headers)


@FUZZ_SETTINGS
@given(value=st.one_of(deep_nesting, hostile_numbers), where=st.sampled_from(["extra", "unit_amount", "created"]))
def test_stripe_refuses_hostile_values_where_it_reads_and_where_it_does_not(client, value, where):
    event_id = f"evt_{uuid.uuid4().hex}"
    body = stripe_event(event_id, **{where: value})
    deep = value[0] in "[{"
    field = {
        "extra": "data.object.extra",
        "unit_amount": "data.object.items.data.0.price.unit_amount",
        "created": "created",
    }[where]

    response = post_stripe(client, body)

    # Where the library's own parser gives up (5,000 digits; about 1,000 levels) there is no event id to key
    # the rejected event by, only its bytes.
    assert_kept_rejected(response, "body" if deep else field, "stripe", event_id, body_key(body.encode()))


@FUZZ_SETTINGS
@given(created=extreme_unix_seconds)
def test_stripe_refuses_events_created_outside_1970_to_2999(client, created):
    event_id = f"evt_{uuid.uuid4().hex}"

    response = post_stripe(client, stripe_event(event_id, created=str(created)))

    assert_kept_rejected(response, "created", "stripe", event_id)
