"""System checks for the misconfigurations a user can make (STYLE habit 7).

Each check names the variable and says what to set, so `manage.py check` is the first thing to run
when the engine refuses to start or an endpoint answers 503.
"""

from __future__ import annotations

from urllib.parse import urlparse

from django.conf import settings
from django.core.checks import Error, Warning, register

from config.optional_secrets import secret_problem, whsec_problem
from messaging.inapp import inapp_url_problem
from messaging.zendesk import zendesk_url_problem

__all__ = ["whsec_problem"]

SYNC_MODES = ("off", "dry_run", "live")

#: Optional secrets (CONTRACT §1) and what happens without them: a weak or malformed one counts as none.
OPTIONAL_SECRETS = {
    "PROVISIONING_WEBHOOK_SECRET": "the provisioning webhook answers 503 not_configured",
    "STRIPE_WEBHOOK_SECRET": "the Stripe webhook answers 503 not_configured",
    "MARKETO_WEBHOOK_TOKEN": "the Marketo endpoint answers 503 not_configured",
    "METRICS_TOKEN": "/metrics answers scrapers 404 (admins still see it logged in)",
}
SECRET_HINTS = {
    "PROVISIONING_WEBHOOK_SECRET": "Copy the signing secret exactly as issued: whsec_ and 24-64 random bytes, base64.",
    "STRIPE_WEBHOOK_SECRET": "Copy the endpoint's signing secret (whsec_…) from Stripe's dashboard.",
    "MARKETO_WEBHOOK_TOKEN": "Generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'",
    "METRICS_TOKEN": "Use python -c 'import secrets; print(secrets.token_urlsafe(32))' and give it to Prometheus.",
}


def _ignored_secret(name: str) -> str | None:
    """Why (part of) this optional secret is not used: dropped when settings were read, or weak as set now."""
    return settings.OPTIONAL_SECRETS_IGNORED.get(name) or secret_problem(name, getattr(settings, name))


@register()
def check_webhook_secrets(app_configs, **kwargs) -> list:
    """Optional secrets only ever warn: a missing, weak or malformed one turns its endpoint off (503), and
    an error would stop migrate, qcluster and every command for the sake of an optional integration."""
    warnings = []
    for name, without in OPTIONAL_SECRETS.items():
        problem = _ignored_secret(name)
        if problem:
            value = getattr(settings, name)
            usable = bool(value) and secret_problem(name, value) is None  # rotated keys: the good ones stay
            effect = "that key is ignored, the others are used" if usable else f"it counts as unset: {without}"
            warnings.append(
                Warning(
                    f"{name}: {problem}; {effect}.",
                    hint=SECRET_HINTS[name],
                    id="lifecycle.W003",
                )
            )
        elif not getattr(settings, name) and name != "METRICS_TOKEN":
            warnings.append(
                Warning(
                    f"{name} is not set: {without}.",
                    hint=SECRET_HINTS[name],
                    id="lifecycle.W002" if name == "MARKETO_WEBHOOK_TOKEN" else "lifecycle.W001",
                )
            )
    return warnings


@register()
def check_salesforce(app_configs, **kwargs) -> list:
    mode = settings.SALESFORCE_SYNC
    if mode not in SYNC_MODES:
        return [
            Error(
                f"SALESFORCE_SYNC={mode!r} is not one of {', '.join(SYNC_MODES)}.",
                hint="Use off, dry_run or live.",
                id="lifecycle.E010",
            )
        ]
    if mode == "off":
        return []
    errors = []
    instance = settings.SALESFORCE_INSTANCE_URL
    if urlparse(instance).scheme != "https":
        errors.append(
            Error(
                f"SALESFORCE_SYNC={mode} needs SALESFORCE_INSTANCE_URL as an https:// address.",
                hint="Set SALESFORCE_INSTANCE_URL=https://yourorg.my.salesforce.com",
                id="lifecycle.E011",
            )
        )
    has_token = bool(settings.SALESFORCE_ACCESS_TOKEN)
    has_client = all((settings.SALESFORCE_LOGIN_URL, settings.SALESFORCE_CLIENT_ID, settings.SALESFORCE_CLIENT_SECRET))
    if mode == "live" and not (has_token or has_client):
        errors.append(
            Error(
                "SALESFORCE_SYNC=live has no credentials.",
                hint="Set SALESFORCE_ACCESS_TOKEN, or SALESFORCE_LOGIN_URL, SALESFORCE_CLIENT_ID and "
                "SALESFORCE_CLIENT_SECRET for the client-credentials flow.",
                id="lifecycle.E012",
            )
        )
    if settings.SALESFORCE_LOGIN_URL and urlparse(settings.SALESFORCE_LOGIN_URL).scheme != "https":
        errors.append(
            Error(
                "SALESFORCE_LOGIN_URL must be an https:// address.",
                hint="Set SALESFORCE_LOGIN_URL=https://login.salesforce.com (or your My Domain).",
                id="lifecycle.E013",
            )
        )
    hedge_after, call_timeout = settings.SALESFORCE_HEDGE_AFTER_SECONDS, settings.SALESFORCE_TIMEOUT_SECONDS
    if settings.SALESFORCE_HEDGE and hedge_after >= call_timeout:
        errors.append(
            Warning(
                f"SALESFORCE_HEDGE_AFTER_SECONDS={hedge_after:g} is not below SALESFORCE_TIMEOUT_SECONDS="
                f"{call_timeout:g}: no call is ever sent a second time.",
                hint="Leave SALESFORCE_HEDGE_AFTER_SECONDS at 0 (automatic), or set it to a few times your usual "
                "call time; SALESFORCE_HEDGE=false turns hedging off.",
                id="lifecycle.W014",
            )
        )
    return errors


@register()
def check_broker(app_configs, **kwargs) -> list:
    broker = settings.Q_BROKER
    if broker == "orm" or urlparse(broker).scheme in ("redis", "rediss", "unix"):
        return []
    return [
        Error(
            f"Q_BROKER={broker!r} is neither 'orm' nor a redis:// address.",
            hint="Use Q_BROKER=orm (embedded default) or Q_BROKER=redis://127.0.0.1:6379/0.",
            id="lifecycle.E020",
        )
    ]


@register()
def check_slack_url(app_configs, **kwargs) -> list:
    url = settings.SLACK_WEBHOOK_URL
    if not url:
        return []
    parsed = urlparse(url)
    if parsed.scheme == "https" and parsed.hostname == "hooks.slack.com":
        return []
    if settings.SLACK_ALLOW_LOOPBACK and parsed.hostname in ("127.0.0.1", "localhost", "::1"):
        return []
    # Slack is optional: a refused address turns the channel off (alerts/delivery.py), it does not stop the engine.
    return [
        Warning(
            "SLACK_WEBHOOK_URL is not an https://hooks.slack.com/ address: Slack delivery is off.",
            hint="Paste the incoming-webhook URL Slack gave you; other hosts are refused.",
            id="lifecycle.W030",
        )
    ]


@register()
def check_email_channel(app_configs, **kwargs) -> list:
    """CONTRACT §1: without EMAIL_URL (and DEBUG off) the email channel is off; say so before alerts pile up."""
    if settings.EMAIL_CHANNEL_ENABLED:
        return []
    return [
        Warning(
            "EMAIL_URL is not set: the email channel is off; alert emails are recorded as skipped, not sent.",
            hint="Set EMAIL_URL=smtp://user:password@mail.example.com:587/?tls=True (or smtp+tls://…).",
            id="lifecycle.W060",
        )
    ]


@register()
def check_privacy(app_configs, **kwargs) -> list:
    """Erasure tombstones need a secret salt in production; retention needs a sane number of days."""
    errors = []
    salt = settings.PRIVACY_HASH_SALT
    if not salt and not (settings.DEBUG or settings.TESTING):
        errors.append(
            Error(
                "PRIVACY_HASH_SALT is not set: erasure tombstones and data requests cannot be filed.",
                hint="Set it once and keep it: python -c 'import secrets; print(secrets.token_urlsafe(32))'",
                id="lifecycle.E040",
            )
        )
    elif salt and len(salt) < 16:
        errors.append(
            Error(
                "PRIVACY_HASH_SALT is shorter than 16 characters: email hashes could be guessed.",
                hint="Use at least 32 random characters; set it once and keep it (a new salt orphans tombstones).",
                id="lifecycle.E041",
            )
        )
    if settings.EVENT_PAYLOAD_RETENTION_DAYS < 0:
        errors.append(
            Error(
                f"EVENT_PAYLOAD_RETENTION_DAYS={settings.EVENT_PAYLOAD_RETENTION_DAYS} is negative.",
                hint="Use a number of days (default 90), or 0 to keep payloads.",
                id="lifecycle.E042",
            )
        )
    return errors


@register()
def check_ops(app_configs, **kwargs) -> list:
    """Monitoring settings that would report a healthy engine as broken, or expose /metrics cheaply."""
    errors = []  # a short METRICS_TOKEN counts as none: check_webhook_secrets warns (lifecycle.W003)
    for name in ("HEALTH_QUEUE_HEARTBEAT_MAX_AGE_SECONDS", "HEALTH_SWEEPER_HEARTBEAT_MAX_AGE_SECONDS"):
        if getattr(settings, name) < 90:
            errors.append(
                Error(
                    f"{name}={getattr(settings, name)} is under 90 s: the heartbeats beat once a minute, so a "
                    "healthy engine would answer 503 between beats.",
                    hint="Keep it at 180 s or more (the defaults are 180 and 300).",
                    id="lifecycle.E051",
                )
            )
    if settings.HEALTH_STARTUP_GRACE_SECONDS < 0:
        errors.append(
            Error(
                f"HEALTH_STARTUP_GRACE_SECONDS={settings.HEALTH_STARTUP_GRACE_SECONDS} is negative.",
                hint="Use the seconds a fresh start needs for its first heartbeats (default 180), or 0 for none.",
                id="lifecycle.E054",
            )
        )
    positive = (
        "ERROR_ALERT_WINDOW_MINUTES",
        "SLA_EVENT_SECONDS",
        "SLA_SALESFORCE_MINUTES",
        "SLA_ALERT_WINDOW_MINUTES",
        "SLA_SOURCE_LOOKBACK_DAYS",
        "OPS_WINDOW_MINUTES",
    )
    for name in positive:
        if getattr(settings, name) <= 0:
            errors.append(Error(f"{name}={getattr(settings, name)} must be positive.", id="lifecycle.E052"))
    if settings.SLA_SOURCE_SILENCE_FACTOR < 1:
        errors.append(
            Error(
                f"SLA_SOURCE_SILENCE_FACTOR={settings.SLA_SOURCE_SILENCE_FACTOR:g} is under 1: every ordinary gap "
                "between two events would count as silence.",
                hint="Use 5 to 20 (default 10).",
                id="lifecycle.E053",
            )
        )
    return errors


def _inapp_warnings() -> list:
    """The in-app channel (CONTRACT §9) is optional: whatever is wrong turns it off and warns."""
    url, secret = settings.PRODUCT_WEBHOOK_URL, settings.PRODUCT_WEBHOOK_SECRET
    ignored = settings.OPTIONAL_SECRETS_IGNORED.get("PRODUCT_WEBHOOK_SECRET")
    if ignored:
        return [
            Warning(
                f"PRODUCT_WEBHOOK_SECRET: {ignored}; it counts as unset: the in-app channel is off.",
                hint="Use the whsec_ key the product verifies with: whsec_ and 24-64 random bytes, base64.",
                id="lifecycle.W070",
            )
        ]
    if url and (problem := inapp_url_problem(url)):
        return [Warning(f"{problem}: the in-app channel refuses every message.", id="lifecycle.W071")]
    if bool(url) != bool(secret):
        missing = "PRODUCT_WEBHOOK_SECRET" if url else "PRODUCT_WEBHOOK_URL"
        return [Warning(f"{missing} is not set: the in-app channel is off.", id="lifecycle.W072")]
    return []


def _zendesk_warnings() -> list:
    """The ticket channel (CONTRACT §9) is optional too: a partial or refused setup warns, never stops."""
    values = {name: getattr(settings, name) for name in ("ZENDESK_URL", "ZENDESK_EMAIL", "ZENDESK_API_TOKEN")}
    if not any(values.values()):
        return []
    missing = [name for name, value in values.items() if not value]
    if missing:
        return [Warning(f"{', '.join(missing)} not set: the ticket channel is off.", id="lifecycle.W073")]
    if problem := zendesk_url_problem(values["ZENDESK_URL"]):
        return [Warning(f"{problem}: the ticket channel refuses every ticket.", id="lifecycle.W074")]
    return []


@register()
def check_behaviour_channels(app_configs, **kwargs) -> list:
    """In-app and ticket channels: warnings for what turns them off; errors only for timeouts that break every call."""
    errors = _inapp_warnings() + _zendesk_warnings()
    timeouts = (
        "PRODUCT_WEBHOOK_CONNECT_TIMEOUT_SECONDS",
        "PRODUCT_WEBHOOK_TIMEOUT_SECONDS",
        "ZENDESK_CONNECT_TIMEOUT_SECONDS",
        "ZENDESK_TIMEOUT_SECONDS",
    )
    for name in timeouts:
        if not 0 < getattr(settings, name) <= 120:
            errors.append(
                Error(
                    f"{name}={getattr(settings, name):g} is not between 0 and 120 seconds.",
                    hint="Use a few seconds to connect and 10-30 s to answer (defaults 5 and 10-15).",
                    id="lifecycle.E075",
                )
            )
    return errors
