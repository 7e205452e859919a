"""System checks name each misconfiguration; `check --deploy` is clean with production settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from config import checks

REPO = Path(__file__).resolve().parent.parent


def ids(messages) -> set[str]:
    return {message.id for message in messages}


def test_good_secret_passes(settings):
    assert ids(checks.check_webhook_secrets(None)) & {"lifecycle.E001"} == set()


@pytest.mark.parametrize("secret", ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_***not-base64***", "whsec_c2hvcnQ="])
def test_malformed_provisioning_secret_is_an_error(settings, secret):
    settings.PROVISIONING_WEBHOOK_SECRET = secret
    assert "lifecycle.E001" in ids(checks.check_webhook_secrets(None))


def test_one_bad_key_among_rotated_keys_is_an_error(settings):
    settings.PROVISIONING_WEBHOOK_SECRET = settings.PROVISIONING_WEBHOOK_SECRET + " nope"
    assert "lifecycle.E001" in ids(checks.check_webhook_secrets(None))


def test_stripe_secret_without_prefix_is_an_error(settings):
    settings.STRIPE_WEBHOOK_SECRET = "sk_test_123"
    assert "lifecycle.E001" in ids(checks.check_webhook_secrets(None))


def test_missing_secrets_are_warnings(settings):
    settings.PROVISIONING_WEBHOOK_SECRET = ""
    assert "lifecycle.W001" in ids(checks.check_webhook_secrets(None))


def test_short_marketo_token_is_an_error(settings):
    settings.MARKETO_WEBHOOK_TOKEN = "abc"
    assert "lifecycle.E002" in ids(checks.check_webhook_secrets(None))


def test_unknown_sync_mode_is_an_error(settings):
    settings.SALESFORCE_SYNC = "on"
    assert ids(checks.check_salesforce(None)) == {"lifecycle.E010"}


def test_live_sync_without_credentials_is_an_error(settings):
    settings.SALESFORCE_SYNC = "live"
    settings.SALESFORCE_INSTANCE_URL = "https://acme.my.salesforce.com"
    settings.SALESFORCE_ACCESS_TOKEN = ""
    settings.SALESFORCE_CLIENT_ID = ""
    assert ids(checks.check_salesforce(None)) == {"lifecycle.E012"}


def test_live_sync_with_token_passes(settings):
    settings.SALESFORCE_SYNC = "live"
    settings.SALESFORCE_INSTANCE_URL = "https://acme.my.salesforce.com"
    settings.SALESFORCE_ACCESS_TOKEN = "00D...!token"
    assert checks.check_salesforce(None) == []


def test_plain_http_instance_is_an_error(settings):
    settings.SALESFORCE_SYNC = "dry_run"
    settings.SALESFORCE_INSTANCE_URL = "http://acme.my.salesforce.com"
    assert "lifecycle.E011" in ids(checks.check_salesforce(None))


@pytest.mark.parametrize(("broker", "ok"), [("orm", True), ("redis://127.0.0.1:6379/0", True), ("amqp://x", False)])
def test_broker_values(settings, broker, ok):
    settings.Q_BROKER = broker
    assert (checks.check_broker(None) == []) is ok


def test_slack_url_must_be_slack(settings):
    settings.SLACK_WEBHOOK_URL = "https://evil.example/hook"
    assert ids(checks.check_slack_url(None)) == {"lifecycle.E030"}
    settings.SLACK_WEBHOOK_URL = "https://hooks.slack.com/services/T000/B000/XXXX"
    assert checks.check_slack_url(None) == []


def production_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECURE_SSL_REDIRECT")}
    env.update(
        ENV_FILE="",
        SECRET_KEY="x7#Jq!p2Lr9@vT4zN8wK1mB6cY3hF0sD5gA-uE_iO+lP&nR*tW",
        ALLOWED_HOSTS="engine.example.com",
        PROVISIONING_WEBHOOK_SECRET="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        STRIPE_WEBHOOK_SECRET="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        MARKETO_WEBHOOK_TOKEN="marketo-token-0123456789abcdef",
        PRIVACY_HASH_SALT="privacy-salt-0123456789abcdef-0123",
        **extra,
    )
    return env


def run_manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )


def test_check_deploy_is_clean_with_production_settings():
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env=production_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_secret_key():
    env = production_env()
    del env["SECRET_KEY"]
    result = run_manage("check", env=env)
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr
