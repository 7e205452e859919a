"""CSV exports of the alert inbox and the workspaces list: the rows the page's filters select, within what
the user may see (the querysets come from the selectors), every cell safe to open in a spreadsheet.

A cell starting with = + - @ (or a tab or carriage return) is a formula to Excel, LibreOffice and
Google Sheets ("=HYPERLINK(...)" in a workspace name would run on the rep's machine): such cells get a
leading apostrophe, which spreadsheets show as text (OWASP "CSV injection").
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from alerts.display import format_money
from alerts.messages import rule_label
from alerts.models import Alert
from alerts.selectors import owner_rep, plan_shown
from workspaces.models import Workspace

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

ALERT_COLUMNS = (
    "alert_id", "created_at_utc", "status", "rule", "title", "why", "workspace_id", "workspace",
    "recipient", "routing", "snoozed_until_utc",
)  # fmt: skip
WORKSPACE_COLUMNS = (
    "workspace_id", "name", "status", "owner_rep", "account", "plan", "trial_expires_at_utc", "mrr", "currency",
    "mrr_reporting", "reporting_currency", "converted_at_utc", "churned_at_utc", "stage", "last_active_utc",
)  # fmt: skip


def csv_safe(value: Any) -> str:
    """The cell as text, defused when a spreadsheet would read it as a formula."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


class _Echo:
    def write(self, value: str) -> str:
        return value


def csv_lines(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> Iterator[str]:
    """The CSV text line by line (for a streaming answer), every cell through csv_safe."""
    writer = csv.writer(_Echo())
    yield writer.writerow(header)
    for row in rows:
        yield writer.writerow([csv_safe(cell) for cell in row])


def _person(user: Any) -> str:
    return (user.get_full_name() or user.get_username()) if user is not None else ""


def alert_rows(alerts: QuerySet[Alert]) -> Iterator[list[Any]]:
    for alert in alerts.iterator(chunk_size=500):
        yield [
            alert.pk, alert.created_at, alert.status, rule_label(alert.rule), alert.title, alert.reason,
            alert.workspace_key, alert.workspace.name if alert.workspace else "",
            _person(alert.recipient) or "Lifecycle admins", alert.routing, alert.snoozed_until,
        ]  # fmt: skip


def workspace_rows(workspaces: QuerySet[Workspace], reporting: str) -> Iterator[list[Any]]:
    for ws in workspaces.iterator(chunk_size=500):
        converted = getattr(ws, "mrr_reporting", None)
        yield [
            ws.workspace_id, ws.name, ws.status, _person(owner_rep(ws)), ws.account.name if ws.account else "",
            plan_shown(ws), ws.trial_expires_at, ws.mrr, ws.currency if ws.mrr is not None else "",
            format_money(converted, "").replace(",", "") if converted is not None else "",
            reporting if converted is not None else "", ws.converted_at, ws.churned_at,
            getattr(ws, "stage_name", None), getattr(ws, "last_active", None),
        ]  # fmt: skip
