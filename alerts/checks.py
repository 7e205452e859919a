"""System checks for alert delivery settings a user can get wrong."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, register


@register()
def check_alert_settings(app_configs, **kwargs) -> list:
    errors = []
    if not 0 <= settings.ALERT_DIGEST_HOUR <= 23:
        errors.append(
            Error(
                f"ALERT_DIGEST_HOUR={settings.ALERT_DIGEST_HOUR} is not an hour of the day.",
                hint="Use 0–23 (UTC).",
                id="lifecycle.E031",
            )
        )
    if settings.ALERT_DELIVERY_MAX_ATTEMPTS < 1:
        errors.append(
            Error("ALERT_DELIVERY_MAX_ATTEMPTS must be at least 1.", hint="The default is 6.", id="lifecycle.E032")
        )
    if not settings.PUBLIC_BASE_URL.startswith(("http://", "https://")):
        errors.append(
            Error(
                f"PUBLIC_BASE_URL={settings.PUBLIC_BASE_URL!r} is not an http(s):// address.",
                hint="Links in alert emails and Slack messages are built from it, e.g. https://lifecycle.example.com.",
                id="lifecycle.E033",
            )
        )
    return errors
