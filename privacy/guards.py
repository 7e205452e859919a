"""Audit entries are deletable by nobody: the admin offers no delete, and the ORM refuses one.

A pre_delete receiver also stops cascades and `QuerySet.delete()` (a model with a pre_delete receiver
is never fast-deleted). Erasure *scrubs* entries (`privacy.erasure`), it never deletes them.
"""

from __future__ import annotations

from auditlog.models import LogEntry
from django.core.exceptions import PermissionDenied
from django.db.models.signals import pre_delete
from django.dispatch import receiver


class AuditEntryDeletionRefused(PermissionDenied):
    pass


@receiver(pre_delete, sender=LogEntry, dispatch_uid="privacy.refuse_audit_entry_delete")
def refuse_audit_entry_delete(sender, instance: LogEntry, **kwargs) -> None:
    raise AuditEntryDeletionRefused(
        f"Audit entry #{instance.pk} cannot be deleted: the audit trail is append-only (docs/privacy.md)."
    )
