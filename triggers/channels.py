"""Channels the trigger engine adds to messaging's registry from services beside messaging.

A Salesforce task (`salesforce_task`, CONTRACT §7: an upgrade call for the owner rep) is written by the
salesforce app's outbox (salesforce/activities.py), but salesforce and messaging sit in one layer and may
not import each other; this app, above both, registers the transport at its ready. Sending a message on
this channel records the Task's outbox row (the drain sends it, with its own attempts and dead letters);
the message's subject is the Task's `Subject`, its text the `Description` (the behavioural context), its
recipient the owner rep's email (their Salesforce user is looked up at sending).
"""

from __future__ import annotations

from django.conf import settings

from messaging.registry import Message, Transport, TransportError, transport_register
from salesforce.activities import TaskUnattachable, task_record

SALESFORCE_TASK_OFF = "Salesforce task channel off: SALESFORCE_SYNC is off"


@transport_register
class SalesforceTaskTransport(Transport):
    kind = "salesforce_task"
    label = "Salesforce task (owner rep)"

    def off_reason(self) -> str | None:
        return SALESFORCE_TASK_OFF if settings.SALESFORCE_SYNC == "off" else None

    def send(self, message: Message) -> None:
        workspace_key = str(message.data.get("workspace_id") or "")
        if not (message.key and workspace_key):
            raise TransportError("a Salesforce task needs the message key and its workspace_id", retryable=False)
        try:
            task_record(
                message_key=message.key,
                workspace_key=workspace_key,
                owner_email=message.recipient,
                subject=message.subject,
                description=message.text,
            )
        except TaskUnattachable as exc:
            raise TransportError(str(exc), retryable=False) from exc
