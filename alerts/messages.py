"""What an alert says: email (subject, text, HTML from templates) and a Slack Block Kit message.

Every message links back to the workspace's rep page (PUBLIC_BASE_URL + /reps/workspaces/<id>/),
or, for an alert about no workspace, to the alert in the admin.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.template.loader import render_to_string
from django.urls import reverse

from alerts.models import Alert, RuleKey


def alert_link(alert: Alert) -> str:
    base = settings.PUBLIC_BASE_URL
    if alert.workspace_key:
        return f"{base}/reps/workspaces/{quote(alert.workspace_key, safe='')}/"
    return base + reverse("admin:alerts_alert_change", args=[alert.pk])


def rule_label(rule: str) -> str:
    return RuleKey(rule).label if rule in RuleKey.values else rule.replace("_", " ").capitalize()


def settings_link() -> str:
    """The rep's settings page, where the footer of every rep email sends them."""
    return f"{settings.PUBLIC_BASE_URL}/reps/settings/"


def _context(alert: Alert) -> dict[str, Any]:
    return {
        "alert": alert,
        "settings_link": settings_link(),
        "link": alert_link(alert),
        "rule_label": rule_label(alert.rule),
        "values": (alert.context or {}).get("values") or {},
        "event_ids": (alert.context or {}).get("event_ids") or [],
    }


def alert_email(alert: Alert) -> tuple[str, str, str]:
    """(subject, text, html) for one alert."""
    context = _context(alert)
    subject = " ".join(render_to_string("alerts/email/alert_subject.txt", context).split())
    return (
        subject[:200],
        render_to_string("alerts/email/alert.txt", context),
        render_to_string("alerts/email/alert.html", context),
    )


def digest_email(alerts: Sequence[Alert]) -> tuple[str, str, str]:
    """(subject, text, html) for one day's digest of several alerts."""
    items = [_context(alert) for alert in alerts]
    inbox = f"{settings.PUBLIC_BASE_URL}/reps/alerts/"
    context = {"items": items, "count": len(items), "inbox": inbox, "settings_link": settings_link()}
    subject = f"Your alert digest: {len(items)} alert{'s' if len(items) != 1 else ''}"
    return (
        subject,
        render_to_string("alerts/email/digest.txt", context),
        render_to_string("alerts/email/digest.html", context),
    )


def _mrkdwn(text: str) -> str:
    """Slack's mrkdwn escaping: only &, < and > are special."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def alert_slack(alert: Alert, *, mention: str = "") -> tuple[str, list[dict[str, Any]]]:
    """(fallback text, Block Kit blocks) for one alert; `mention` is a Slack member id to @-mention."""
    link = alert_link(alert)
    who = f"<@{mention}>" if mention else _mrkdwn(str(alert.recipient or "Lifecycle admins"))
    fields = [
        {"type": "mrkdwn", "text": f"*Rule*\n{_mrkdwn(rule_label(alert.rule))}"},
        {"type": "mrkdwn", "text": f"*For*\n{who}"},
    ]
    if alert.workspace_key:
        fields.append({"type": "mrkdwn", "text": f"*Workspace*\n<{link}|{_mrkdwn(alert.workspace_key)}>"})
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": alert.title[:150], "emoji": False}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _mrkdwn(alert.reason)[:2900]}, "fields": fields},
        {
            "type": "actions",
            "elements": [
                {
                    "type": "button",
                    "text": {"type": "plain_text", "text": "Open workspace" if alert.workspace_key else "Open alert"},
                    "url": link,
                    "action_id": "open",
                }
            ],
        },
    ]
    if alert.routing:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _mrkdwn(alert.routing)}]})
    # The fallback text is mrkdwn too (notifications, clients without blocks): a title carrying `<!channel>`
    # must reach Slack as text, not as a mention.
    return f"{_mrkdwn(alert.title)} — {link}", blocks
