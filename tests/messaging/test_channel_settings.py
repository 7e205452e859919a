"""The channels' settings and checks: whatever is wrong turns the channel off and warns, never stops the engine."""

from __future__ import annotations

import pytest

from config import checks
from tests.messaging.conftest import new_whsec
from tests.test_settings_checks import production_env, run_manage


def ids(messages) -> set[str]:
    return {message.id for message in messages}


def test_a_complete_setup_passes(settings) -> None:
    settings.PRODUCT_WEBHOOK_URL, settings.PRODUCT_WEBHOOK_SECRET = "https://product.example/hooks", new_whsec()
    settings.ZENDESK_URL, settings.ZENDESK_EMAIL = "https://acme.zendesk.com", "engine@acme.example"
    settings.ZENDESK_API_TOKEN = "t" * 40

    assert checks.check_behaviour_channels(None) == []


def test_nothing_set_is_quiet_the_channels_are_simply_off(settings) -> None:
    settings.PRODUCT_WEBHOOK_URL = settings.PRODUCT_WEBHOOK_SECRET = ""
    settings.ZENDESK_URL = settings.ZENDESK_EMAIL = settings.ZENDESK_API_TOKEN = ""

    assert checks.check_behaviour_channels(None) == []


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"PRODUCT_WEBHOOK_SECRET": ""}, "lifecycle.W072"),
        ({"PRODUCT_WEBHOOK_URL": "http://product.example/hooks"}, "lifecycle.W071"),
        (
            {"PRODUCT_WEBHOOK_URL": "https://127.0.0.1:9000/hooks", "PRODUCT_WEBHOOK_ALLOW_LOOPBACK": False},
            "lifecycle.W071",
        ),
        ({"ZENDESK_API_TOKEN": ""}, "lifecycle.W073"),
        ({"ZENDESK_URL": "http://acme.zendesk.com"}, "lifecycle.W074"),
        ({"ZENDESK_URL": "https://acme.zendesk.com/agent"}, "lifecycle.W074"),
    ],
)
def test_a_partial_or_refused_setup_is_a_warning(settings, changes: dict, expected: str) -> None:
    # given: a complete setup, then one thing wrong
    settings.PRODUCT_WEBHOOK_URL, settings.PRODUCT_WEBHOOK_SECRET = "https://product.example/hooks", new_whsec()
    settings.ZENDESK_URL, settings.ZENDESK_EMAIL = "https://acme.zendesk.com", "engine@acme.example"
    settings.ZENDESK_API_TOKEN = "t" * 40
    for name, value in changes.items():
        setattr(settings, name, value)

    # when
    messages = checks.check_behaviour_channels(None)

    # then
    assert ids(messages) == {expected}
    assert {type(m).__name__ for m in messages} == {"Warning"}


@pytest.mark.parametrize("value", [0.0, -1.0, 600.0])
def test_a_timeout_outside_0_to_120_seconds_is_an_error(settings, value: float) -> None:
    settings.ZENDESK_TIMEOUT_SECONDS = value

    assert ids(checks.check_behaviour_channels(None)) == {"lifecycle.E075"}


def test_a_malformed_product_secret_counts_as_none_and_only_warns() -> None:
    # given: production settings with the in-app channel configured with a key that is not whsec_
    env = production_env(
        PRODUCT_WEBHOOK_URL="https://product.example/hooks", PRODUCT_WEBHOOK_SECRET="plain-secret-1234"
    )

    # when
    code = "from django.conf import settings as s; print(repr(s.PRODUCT_WEBHOOK_SECRET))"
    shell = run_manage("shell", "-v", "0", "-c", code, env=env)
    check = run_manage("check", env=env)

    # then: the channel is off, the engine starts, and the secret is not printed
    assert shell.stdout.strip() == "''", shell.stderr
    assert check.returncode == 0, check.stdout + check.stderr
    assert "lifecycle.W070" in check.stderr and "in-app channel is off" in check.stderr
    assert "plain-secret-1234" not in check.stdout + check.stderr


def test_channel_settings_are_read_from_the_environment() -> None:
    env = production_env(
        PRODUCT_WEBHOOK_URL="https://product.example/hooks",
        PRODUCT_WEBHOOK_SECRET=new_whsec(),
        PRODUCT_WEBHOOK_TIMEOUT_SECONDS="7.5",
        ZENDESK_URL="https://acme.zendesk.com/",
        ZENDESK_EMAIL="engine@acme.example",
        ZENDESK_API_TOKEN="t" * 40,
    )
    code = (
        "from django.conf import settings as s; from messaging.registry import transport_for as t; "
        "print(s.PRODUCT_WEBHOOK_TIMEOUT_SECONDS, s.ZENDESK_URL, t('in_app').off_reason(), t('ticket').off_reason())"
    )

    result = run_manage("shell", "-v", "0", "-c", code, env=env)

    assert result.stdout.split() == ["7.5", "https://acme.zendesk.com", "None", "None"], result.stderr
