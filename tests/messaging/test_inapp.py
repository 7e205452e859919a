"""The in-app transport against the product stand-in, over real HTTPS (CONTRACT §9)."""

from __future__ import annotations

import pytest

from emulators.product_webhook import ProductWebhookSink
from messaging.inapp import INAPP_OFF, InAppError
from messaging.registry import Message, transport_for
from tests.messaging.conftest import new_whsec


def in_app_message(key: str = "firing-41:in_app", **data: str) -> Message:
    fields = {"workspace_id": "ws_1", "trigger": "trial_day_3_idle", "firing_id": "41", "cta_url": "https://app/x"}
    return Message(
        recipient="ada@acme.example",
        subject="Invite your team",
        text="Workspaces with three members stay.",
        key=key,
        data=fields | data,
    )


def test_the_product_verifies_the_signature_and_gets_the_contract_body(product_webhook: ProductWebhookSink) -> None:
    # when
    transport_for("in_app").send(in_app_message())

    # then
    (received,) = product_webhook.received
    assert received.webhook_id == "firing-41:in_app"
    assert received.payload["type"] == "message.in_app"
    assert received.payload["timestamp"].endswith("Z")
    assert received.payload["data"] == {
        "workspace_id": "ws_1",
        "user_email": "ada@acme.example",
        "trigger": "trial_day_3_idle",
        "firing_id": "41",
        "message": {
            "title": "Invite your team",
            "body": "Workspaces with three members stay.",
            "cta_url": "https://app/x",
        },
    }
    assert product_webhook.state.rejected == []


def test_a_retry_carries_the_same_webhook_id_so_the_product_drops_it(product_webhook: ProductWebhookSink) -> None:
    # given: the first attempt fails with 500 and is not taken
    product_webhook.fail_next(1)
    with pytest.raises(InAppError) as failed:
        transport_for("in_app").send(in_app_message())
    assert failed.value.retryable

    # when: retried twice (the second a duplicate after a lost answer)
    transport_for("in_app").send(in_app_message())
    transport_for("in_app").send(in_app_message())

    # then
    assert [r.webhook_id for r in product_webhook.received] == ["firing-41:in_app"]
    assert product_webhook.state.duplicates == ["firing-41:in_app"]


def test_another_key_is_another_message(product_webhook: ProductWebhookSink) -> None:
    transport_for("in_app").send(in_app_message(key="firing-41:in_app"))
    transport_for("in_app").send(in_app_message(key="firing-42:in_app", firing_id="42"))

    assert [r.webhook_id for r in product_webhook.received] == ["firing-41:in_app", "firing-42:in_app"]


def test_a_wrong_secret_is_refused_by_the_product_and_not_retryable(settings, product_webhook) -> None:
    # given
    settings.PRODUCT_WEBHOOK_SECRET = new_whsec()

    # when
    with pytest.raises(InAppError) as refused:
        transport_for("in_app").send(in_app_message())

    # then
    assert not refused.value.retryable
    assert "HTTP 401" in str(refused.value)
    assert product_webhook.received == []
    assert product_webhook.state.rejected == ["No matching signature found"]


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (503, True), (429, True), (400, False), (404, False)])
def test_server_errors_and_429_are_retryable_other_4xx_not(product_webhook, status: int, retryable: bool) -> None:
    product_webhook.fail_next(1, status=status)

    with pytest.raises(InAppError) as failed:
        transport_for("in_app").send(in_app_message())

    assert failed.value.retryable is retryable
    assert f"HTTP {status}" in str(failed.value)


def test_a_timeout_is_retryable(settings, product_webhook: ProductWebhookSink) -> None:
    # given: the product stalls longer than the read timeout
    settings.PRODUCT_WEBHOOK_TIMEOUT_SECONDS = 0.3
    product_webhook.fail_next(1, stall_seconds=1.0)

    # when
    with pytest.raises(InAppError) as failed:
        transport_for("in_app").send(in_app_message())

    # then
    assert failed.value.retryable
    assert "timed out" in str(failed.value)


def test_a_redirect_is_not_followed(settings) -> None:
    # given: the configured address redirects to another product endpoint that would accept the message
    with (
        ProductWebhookSink(secret=new_whsec(), tls=False) as target,
        ProductWebhookSink(secret=target.state.secret, tls=False) as configured,
    ):
        configured.fail_next(1, status=307, location=target.url)
        settings.PRODUCT_WEBHOOK_URL, settings.PRODUCT_WEBHOOK_SECRET = configured.url, target.state.secret
        settings.PRODUCT_WEBHOOK_ALLOW_LOOPBACK = True

        # when
        with pytest.raises(InAppError) as refused:
            transport_for("in_app").send(in_app_message())

        # then
        assert not refused.value.retryable
        assert "redirects are not followed" in str(refused.value)
        assert target.state.attempts == 0


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://product.example/hooks", "must be an https:// address"),
        ("ftp://product.example/hooks", "is not an http(s) address"),
        ("https://user:pw@product.example/hooks", "must not carry credentials"),
    ],
)
def test_addresses_outside_the_allowlist_are_refused_before_any_call(settings, url: str, reason: str) -> None:
    settings.PRODUCT_WEBHOOK_URL, settings.PRODUCT_WEBHOOK_SECRET = url, new_whsec()

    with pytest.raises(InAppError) as refused:
        transport_for("in_app").send(in_app_message())

    assert not refused.value.retryable
    assert reason in str(refused.value)


def test_loopback_needs_the_explicit_setting(settings, product_webhook: ProductWebhookSink) -> None:
    # given
    settings.PRODUCT_WEBHOOK_ALLOW_LOOPBACK = False

    # when
    with pytest.raises(InAppError) as refused:
        transport_for("in_app").send(in_app_message())

    # then
    assert "PRODUCT_WEBHOOK_ALLOW_LOOPBACK" in str(refused.value)
    assert product_webhook.state.attempts == 0


@pytest.mark.parametrize("unset", ["PRODUCT_WEBHOOK_URL", "PRODUCT_WEBHOOK_SECRET"])
def test_the_channel_is_off_when_url_or_secret_is_unset(settings, product_webhook, unset: str) -> None:
    assert transport_for("in_app").off_reason() is None

    setattr(settings, unset, "")

    assert transport_for("in_app").off_reason() == INAPP_OFF


def test_a_message_without_its_structured_fields_is_refused(product_webhook: ProductWebhookSink) -> None:
    message = Message(recipient="ada@acme.example", subject="Hi", key="firing-1:in_app", data={"workspace_id": "ws_1"})

    with pytest.raises(InAppError) as refused:
        transport_for("in_app").send(message)

    assert not refused.value.retryable
    assert "trigger, firing_id" in str(refused.value)
    assert product_webhook.state.attempts == 0


def test_a_key_that_cannot_be_a_header_is_refused(product_webhook: ProductWebhookSink) -> None:
    with pytest.raises(InAppError, match="not a usable webhook-id"):
        transport_for("in_app").send(in_app_message(key="firing 41\r\nX-Evil: 1"))

    assert product_webhook.state.attempts == 0
