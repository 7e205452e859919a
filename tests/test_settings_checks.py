"""System checks name each misconfiguration; `check --deploy` is clean with production settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from config import checks
from config.optional_secrets import optional_secret

REPO = Path(__file__).resolve().parent.parent


def ids(messages) -> set[str]:
    return {message.id for message in messages}


def levels(messages) -> set[str]:
    return {type(message).__name__ for message in messages}


def test_good_secret_passes(settings):
    settings.PROVISIONING_WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    refused = [m.msg for m in checks.check_webhook_secrets(None) if m.id == "lifecycle.W003"]
    assert [msg for msg in refused if msg.startswith("PROVISIONING_WEBHOOK_SECRET")] == [], refused


# Optional secrets (CONTRACT §1): a weak or malformed one counts as none and only ever warns, so it never
# stops migrate, qcluster or any other command.


@pytest.mark.parametrize("secret", ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_***not-base64***", "whsec_c2hvcnQ="])
def test_malformed_provisioning_secret_is_a_warning(settings, secret):
    settings.PROVISIONING_WEBHOOK_SECRET = secret
    messages = checks.check_webhook_secrets(None)
    assert "lifecycle.W003" in ids(messages) and levels(messages) == {"Warning"}
    assert optional_secret("PROVISIONING_WEBHOOK_SECRET", secret, ignored := {}) == ""
    assert "PROVISIONING_WEBHOOK_SECRET" in ignored


def test_one_bad_key_among_rotated_keys_is_dropped_and_the_others_kept(settings):
    good = settings.PROVISIONING_WEBHOOK_SECRET
    settings.PROVISIONING_WEBHOOK_SECRET = good + " nope"
    [warning] = [m for m in checks.check_webhook_secrets(None) if m.id == "lifecycle.W003"]
    assert "the others are used" not in warning.msg  # as set here (no settings load), nothing was dropped yet
    ignored: dict[str, str] = {}
    assert optional_secret("PROVISIONING_WEBHOOK_SECRET", good + " nope", ignored) == good
    settings.PROVISIONING_WEBHOOK_SECRET, settings.OPTIONAL_SECRETS_IGNORED = good, ignored
    [warning] = [m for m in checks.check_webhook_secrets(None) if m.id == "lifecycle.W003"]
    assert "does not start with 'whsec_'; that key is ignored, the others are used" in warning.msg


def test_stripe_secret_without_prefix_is_a_warning(settings):
    settings.STRIPE_WEBHOOK_SECRET = "sk_test_123"
    assert "lifecycle.W003" in ids(checks.check_webhook_secrets(None))
    assert optional_secret("STRIPE_WEBHOOK_SECRET", "sk_test_123", {}) == ""


def test_missing_secrets_are_warnings(settings):
    settings.PROVISIONING_WEBHOOK_SECRET = ""
    assert "lifecycle.W001" in ids(checks.check_webhook_secrets(None))


def test_short_marketo_token_is_a_warning_and_counts_as_none(settings):
    settings.MARKETO_WEBHOOK_TOKEN = "abc"
    messages = checks.check_webhook_secrets(None)
    assert levels(messages) == {"Warning"}
    # only the Marketo token's warning: another secret's state is not what this test is about
    [warning] = [m for m in messages if m.id == "lifecycle.W003" and m.msg.startswith("MARKETO")]
    assert warning.msg == (
        "MARKETO_WEBHOOK_TOKEN: it is shorter than 24 characters and could be guessed; it counts as unset: "
        "the Marketo endpoint answers 503 not_configured."
    )
    ignored: dict[str, str] = {}
    assert optional_secret("MARKETO_WEBHOOK_TOKEN", "x" * 23, ignored) == ""
    assert optional_secret("MARKETO_WEBHOOK_TOKEN", "x" * 24, ignored) == "x" * 24
    assert list(ignored) == ["MARKETO_WEBHOOK_TOKEN"]


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
    assert ids(checks.check_slack_url(None)) == {"lifecycle.W030"}  # Slack is optional: it warns
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
        EMAIL_URL="smtp://mail.example.com:587/?tls=True",
    )
    env.update(extra)
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


def test_a_short_marketo_token_does_not_stop_the_engine_and_the_endpoint_answers_503():
    """Before: lifecycle.E002, an error, so `check`, `migrate` and `qcluster` refused to run."""
    env = production_env(MARKETO_WEBHOOK_TOKEN="short-marketo-token")
    result = run_manage("check", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "lifecycle.W003" in result.stderr and "MARKETO_WEBHOOK_TOKEN" in result.stderr
    assert "short-marketo-token" not in result.stderr + result.stdout  # a secret is never printed

    code = (
        "from django.test import Client; "
        "r = Client().post('/webhooks/marketo/', b'{}', content_type='application/json', secure=True, "
        "HTTP_HOST='engine.example.com', HTTP_AUTHORIZATION='Bearer short-marketo-token'); "
        "print(r.status_code, r.content.decode())"
    )
    result = run_manage("shell", "-v", "0", "-c", code, env=env)
    assert result.stdout.split(maxsplit=1) == ["503", '{"error": "not_configured"}\n'], result.stderr


def test_production_refuses_to_start_without_a_privacy_salt_like_without_secret_key():
    """CONTRACT §1: required when DEBUG is off. Before: only a system check, which gunicorn never runs."""
    env = production_env()
    del env["PRIVACY_HASH_SALT"]
    result = subprocess.run(
        [sys.executable, "-c", "from config.wsgi import application"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured: Set the PRIVACY_HASH_SALT environment variable" in result.stderr
    assert run_manage("check", env=production_env(DEBUG="on", PRIVACY_HASH_SALT="")).returncode == 0


def test_without_email_url_in_production_the_email_channel_is_off_and_check_warns():
    """CONTRACT §1. Before: the console backend, so alert mail (names, addresses) went to the log as `sent`."""
    env = production_env()
    env.pop("EMAIL_URL", None)
    code = "from django.conf import settings as s; print(s.EMAIL_CHANNEL_ENABLED, s.EMAIL_BACKEND)"
    result = run_manage("shell", "-v", "0", "-c", code, env=env)
    assert result.stdout.split() == ["False", "django.core.mail.backends.dummy.EmailBackend"], result.stderr
    check = run_manage("check", env=env)
    assert check.returncode == 0 and "lifecycle.W060" in check.stderr and "EMAIL_URL is not set" in check.stderr

    result = run_manage("shell", "-v", "0", "-c", code, env={**env, "EMAIL_URL": "smtp://127.0.0.1:1025"})
    assert result.stdout.split() == ["True", "django.core.mail.backends.smtp.EmailBackend"], result.stderr
    result = run_manage("shell", "-v", "0", "-c", code, env={**env, "DEBUG": "on"})
    assert result.stdout.split() == ["True", "django.core.mail.backends.console.EmailBackend"], result.stderr
