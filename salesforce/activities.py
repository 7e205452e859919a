"""A rep's upgrade call as a Salesforce `Task` (CONTRACT §7), written through the outbox like every record.

`task_record` makes the outbox row: the Task's `Subject` and `Description` (the behavioural context) from
the message, `What` the workspace's account (else `Who` its lead), `Who` its contact, upserted by
`Lifecycle_Engine_ID__c` (`task_<message key>`), and not sent before the record it hangs on is in
Salesforce (`depends_on`). A Task once recorded is the rep's: recording the same message again changes
nothing, so a repeated send never reopens a task the rep has closed.

The owner is a Salesforce user, whom the engine knows only by the rep's email: the row keeps that email
under `_owner_email` (a key of the engine's own, never sent), and `tasks_send` looks the active users up
in one query per batch at sending, setting `OwnerId`. A rep with no active Salesforce user is a dead
letter that names the email (the review queue, then a retry once the user exists).

The channel that records these rows for trigger actions is `salesforce_task` (triggers/channels.py):
messaging's registry is in a sibling layer, which this app may not import.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from salesforce.adapter import RecordResult, SalesforceClient
from salesforce.models import OutboxItem
from salesforce.outbox import EXTERNAL_ID, key_of, outbox_record
from workspaces.models import Workspace

TASK = "Task"
#: The engine's note of the owner rep's email in a Task row's payload: resolved to OwnerId, never sent.
OWNER_EMAIL = "_owner_email"
OWNER_MISSING = "OWNER_NOT_IN_SALESFORCE"
SUBJECT_MAX, DESCRIPTION_MAX = 255, 32000


class TaskUnattachable(ValueError):
    """The workspace has nothing in Salesforce a Task can hang on (no account, no lead), or is unknown."""


def task_key(message_key: str) -> str:
    return f"task_{message_key}"


def task_record(
    *, message_key: str, workspace_key: str, owner_email: str, subject: str, description: str
) -> OutboxItem:
    """The Task's outbox row for this message (made once; an existing one is returned unchanged), and a
    drain requested after the caller's commit."""
    existing = OutboxItem.objects.filter(object_type=TASK, external_id=task_key(message_key)).first()
    if existing is not None:
        return existing
    workspace = Workspace.objects.filter(workspace_id=workspace_key).first()
    if workspace is None:
        raise TaskUnattachable(f"workspace {workspace_key!r} is not known to the engine")
    links, depends_on = task_links(workspace)
    payload = {
        EXTERNAL_ID: task_key(message_key),
        "Subject": subject[:SUBJECT_MAX] or "Upgrade call",
        "Description": description[:DESCRIPTION_MAX],
        "Status": "Not Started",
        "Priority": "High",
        "ActivityDate": timezone.now().date().isoformat(),
        **links,
        OWNER_EMAIL: owner_email.strip().lower(),
    }
    item = outbox_record(
        object_type=TASK, external_id=payload[EXTERNAL_ID], payload=payload, workspace_key=workspace_key,
        depends_on=depends_on,
    )  # fmt: skip
    from salesforce.drain import drain_request  # the drain imports the worker, which imports this module

    transaction.on_commit(drain_request)
    return item


def task_links(workspace: Workspace) -> tuple[dict[str, Any], OutboxItem | None]:
    """The Task's `What`/`Who` references (polymorphic: each names its object) and the outbox row it waits
    for: the contact's (itself after the account) else the account's; without an account, the lead's."""
    if workspace.account_id is not None:
        links = {"What": _ref("Account", key_of("Account", workspace.account_id))}
        waits = ("Account", key_of("Account", workspace.account_id))
        if workspace.contact_id is not None:
            links["Who"] = _ref("Contact", key_of("Contact", workspace.contact_id))
            waits = ("Contact", key_of("Contact", workspace.contact_id))
    elif workspace.lead_id is not None:
        links = {"Who": _ref("Lead", key_of("Lead", workspace.lead_id))}  # a lead takes no What (Salesforce)
        waits = ("Lead", key_of("Lead", workspace.lead_id))
    else:
        raise TaskUnattachable(
            f"workspace {workspace.workspace_id!r} has neither an account nor a lead: nothing in Salesforce to "
            "attach the task to"
        )
    return links, OutboxItem.objects.filter(object_type=waits[0], external_id=waits[1]).first()


def _ref(object_type: str, key: str) -> dict[str, Any]:
    return {"attributes": {"type": object_type}, EXTERNAL_ID: key}


def tasks_send(client: SalesforceClient, items: list[OutboxItem]) -> dict[int, RecordResult]:
    """Upsert claimed Task rows with their owners' Salesforce ids; a result per row (a row whose owner has
    no active Salesforce user is refused with OWNER_NOT_IN_SALESFORCE). Raises SalesforceCallError."""
    owners = salesforce_users(client, {item.payload.get(OWNER_EMAIL) or "" for item in items} - {""})
    results: dict[int, RecordResult] = {}
    going: list[tuple[OutboxItem, dict[str, Any]]] = []
    for item in items:
        email = item.payload.get(OWNER_EMAIL) or ""
        if email not in owners:
            message = f"No active Salesforce user has the owner rep's email {email!r}: add it there, then retry."
            results[item.pk] = RecordResult(False, error_code=OWNER_MISSING, error_message=message)
            continue
        payload = {name: value for name, value in item.payload.items() if name != OWNER_EMAIL}
        going.append((item, payload | {"OwnerId": owners[email]}))
    if going:
        answers = client.upsert_collection(TASK, EXTERNAL_ID, [payload for _, payload in going])
        results |= {item.pk: answer for (item, _), answer in zip(going, answers, strict=True)}
    return results


def salesforce_users(client: SalesforceClient, emails: set[str]) -> dict[str, str]:
    """Lower-cased email -> the Id of the active Salesforce user with it (the first by username)."""
    if not emails:
        return {}
    listed = ", ".join(soql_string(email) for email in sorted(emails))
    soql = f"SELECT Id, Email FROM User WHERE IsActive = true AND Email IN ({listed}) ORDER BY Username"  # noqa: S608
    found: dict[str, str] = {}
    for row in client.query(soql):
        found.setdefault((row.get("Email") or "").lower(), row["Id"])
    return found


def soql_string(value: str) -> str:
    """A SOQL string literal (backslashes and quotes escaped)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
