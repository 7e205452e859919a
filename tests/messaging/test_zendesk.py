"""The ticket transport (zenpy) against the Zendesk stand-in, over real HTTPS (CONTRACT §9)."""

from __future__ import annotations

import socket

import pytest

from emulators.zendesk import ZendeskEmulator
from messaging.registry import Message, transport_for
from messaging.zendesk import ZENDESK_OFF, ZendeskError

CONTEXT = "Sessions fell from 14 to 3 a week; 4 tickets in 7 days; cohort at_risk since 2026-12-01."


def escalation(key: str = "escalation:ws_1:at_risk", text: str = CONTEXT) -> Message:
    return Message(recipient="ada@acme.example", subject="At risk: Acme", text=text, key=key)


def test_an_escalation_opens_a_ticket_with_the_behavioural_context(zendesk: ZendeskEmulator) -> None:
    # when
    transport_for("ticket").send(escalation())

    # then
    (ticket,) = zendesk.desk.tickets.values()
    assert ticket["external_id"] == "escalation:ws_1:at_risk"
    assert ticket["subject"] == "At risk: Acme"
    assert ticket["description"] == CONTEXT
    assert ticket["requester_id"] == zendesk.desk.users["ada@acme.example"]
    assert "lifecycle_engine" in ticket["tags"]
    assert zendesk.desk.comments[ticket["id"]][0]["public"] is False


def test_the_same_escalation_updates_its_open_ticket(zendesk: ZendeskEmulator) -> None:
    # given
    transport_for("ticket").send(escalation())

    # when
    transport_for("ticket").send(escalation(text="Still declining: 1 session this week."))

    # then
    (ticket,) = zendesk.desk.tickets.values()
    bodies = [comment["body"] for comment in zendesk.desk.comments[ticket["id"]]]
    assert bodies == [CONTEXT, "Still declining: 1 session this week."]


def test_after_the_ticket_is_solved_a_new_one_is_opened(zendesk: ZendeskEmulator) -> None:
    # given
    transport_for("ticket").send(escalation())
    zendesk.desk.update(1, {"status": "solved"})

    # when
    transport_for("ticket").send(escalation(text="Declining again."))

    # then
    tickets = zendesk.desk.with_external_id("escalation:ws_1:at_risk")
    assert [(t["id"], t["status"]) for t in tickets] == [(1, "solved"), (2, "new")]
    assert zendesk.desk.tickets[2]["description"] == "Declining again."
    assert len(zendesk.desk.comments[1]) == 1


def test_a_key_with_reserved_characters_still_finds_its_ticket(zendesk: ZendeskEmulator) -> None:
    key = "escalation:ws 1&status=solved#x"

    transport_for("ticket").send(escalation(key=key))
    transport_for("ticket").send(escalation(key=key))

    (ticket,) = zendesk.desk.tickets.values()
    assert ticket["external_id"] == key
    assert len(zendesk.desk.comments[ticket["id"]]) == 2


def test_another_escalation_gets_its_own_ticket(zendesk: ZendeskEmulator) -> None:
    transport_for("ticket").send(escalation(key="escalation:ws_1:at_risk"))
    transport_for("ticket").send(escalation(key="escalation:ws_2:at_risk"))

    assert sorted(t["external_id"] for t in zendesk.desk.tickets.values()) == [
        "escalation:ws_1:at_risk",
        "escalation:ws_2:at_risk",
    ]


def test_a_wrong_token_is_not_retryable_and_says_what_to_check(settings, zendesk: ZendeskEmulator) -> None:
    # given
    settings.ZENDESK_API_TOKEN = "not-the-token"

    # when
    with pytest.raises(ZendeskError) as refused:
        transport_for("ticket").send(escalation())

    # then
    assert not refused.value.retryable
    assert "HTTP 401" in str(refused.value)
    assert "ZENDESK_EMAIL and ZENDESK_API_TOKEN" in str(refused.value)
    assert zendesk.desk.tickets == {}


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (503, True), (429, True), (400, False)])
def test_server_errors_and_rate_limits_are_retryable_other_4xx_not(zendesk, status: int, retryable: bool) -> None:
    # given: the search for an open ticket fails
    zendesk.fail_next(1, status=status)

    # when
    with pytest.raises(ZendeskError) as failed:
        transport_for("ticket").send(escalation())

    # then
    assert failed.value.retryable is retryable
    assert zendesk.desk.tickets == {}


def test_a_rate_limit_does_not_sleep_in_the_worker(zendesk: ZendeskEmulator) -> None:
    # given: 429 with Retry-After: 30 (zenpy would wait 30 s unless told not to)
    zendesk.fail_next(1, status=429)

    # when
    with pytest.raises(ZendeskError, match="429") as failed:
        transport_for("ticket").send(escalation())

    # then: one call, no second attempt after a wait
    assert failed.value.retryable
    assert len(zendesk.desk.calls) == 1


def test_a_lost_answer_then_retry_updates_the_ticket_it_created(zendesk: ZendeskEmulator) -> None:
    # given: the create went through, then the retry arrives (as after a timeout on the answer)
    transport_for("ticket").send(escalation())

    # when
    transport_for("ticket").send(escalation())

    # then
    assert len(zendesk.desk.tickets) == 1


def test_a_closed_ticket_is_not_updated_a_new_one_is_opened(zendesk: ZendeskEmulator) -> None:
    transport_for("ticket").send(escalation())
    zendesk.desk.update(1, {"status": "closed"})

    transport_for("ticket").send(escalation())

    assert [t["status"] for t in zendesk.desk.tickets.values()] == ["closed", "new"]


def test_a_timeout_is_retryable(settings) -> None:
    # given: a desk that accepts the connection and never answers
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        settings.ZENDESK_URL = f"https://127.0.0.1:{silent.getsockname()[1]}"
        settings.ZENDESK_EMAIL, settings.ZENDESK_API_TOKEN = "engine@example.com", "t" * 40
        settings.ZENDESK_ALLOW_LOOPBACK = True
        settings.ZENDESK_CONNECT_TIMEOUT_SECONDS = settings.ZENDESK_TIMEOUT_SECONDS = 0.3  # the TLS handshake stalls

        # when
        with pytest.raises(ZendeskError) as failed:
            transport_for("ticket").send(escalation())

    # then
    assert failed.value.retryable
    assert "timed out" in str(failed.value)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://acme.zendesk.com", "must be an https:// address"),
        ("https://acme.zendesk.com/api/v2", "base address only"),
        ("https://localhost:8443", "has no domain"),
    ],
)
def test_addresses_outside_the_allowlist_are_refused(settings, url: str, reason: str) -> None:
    settings.ZENDESK_URL, settings.ZENDESK_EMAIL, settings.ZENDESK_API_TOKEN = url, "a@b.example", "t" * 40

    with pytest.raises(ZendeskError) as refused:
        transport_for("ticket").send(escalation())

    assert not refused.value.retryable
    assert reason in str(refused.value)


def test_loopback_needs_the_explicit_setting(settings, zendesk: ZendeskEmulator) -> None:
    settings.ZENDESK_ALLOW_LOOPBACK = False

    with pytest.raises(ZendeskError, match="ZENDESK_ALLOW_LOOPBACK"):
        transport_for("ticket").send(escalation())

    assert zendesk.desk.calls == []


@pytest.mark.parametrize("unset", ["ZENDESK_URL", "ZENDESK_EMAIL", "ZENDESK_API_TOKEN"])
def test_the_channel_is_off_when_a_setting_is_unset(settings, zendesk: ZendeskEmulator, unset: str) -> None:
    assert transport_for("ticket").off_reason() is None

    setattr(settings, unset, "")

    assert transport_for("ticket").off_reason() == ZENDESK_OFF


def test_a_message_without_an_escalation_key_is_refused(zendesk: ZendeskEmulator) -> None:
    with pytest.raises(ZendeskError, match="escalation key"):
        transport_for("ticket").send(escalation(key=""))

    assert zendesk.desk.calls == []
