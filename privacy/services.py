"""Privacy services: data requests (export, erasure) with who and when, and payload retention.

Views, admin actions, commands and tasks call these; the mechanics live in `privacy.export`,
`privacy.erasure` and `privacy.retention`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from privacy.erasure import ErasureInvalid, clean_email, person_erase, sqlite_wal_checkpoint
from privacy.export import SECTIONS, person_export
from privacy.identity import email_hash
from privacy.models import DataRequest
from privacy.retention import RetentionReport, events_scrub_expired

logger = logging.getLogger(__name__)

__all__ = ["ErasureInvalid", "data_request_carry_out", "data_request_create", "retention_run"]


def data_request_create(
    *, kind: str, email: str, requested_by: AbstractBaseUser | None = None, requested_by_name: str = "", note: str = ""
) -> DataRequest:
    """Record a request; the address is held only until it is carried out."""
    if kind not in DataRequest.Kind.values:
        raise ErasureInvalid(f"kind: {kind!r} is not one of {', '.join(DataRequest.Kind.values)}.")
    address = clean_email(email)
    name = requested_by.get_username() if requested_by is not None else requested_by_name
    if not name:
        raise ErasureInvalid("requested_by: say who asked (a user, or a name for a command run).")
    return DataRequest.objects.create(
        kind=kind,
        email=address,
        email_hash=email_hash(address),
        note=note,
        requested_by=requested_by,
        requested_by_name=name,
    )


def data_request_carry_out(*, data_request: DataRequest) -> dict[str, Any] | None:
    """Carry out a pending request; return the export document for an export, None for an erasure.

    Afterwards the request keeps who, when and what (counts), and the address is gone.
    """
    if data_request.status == DataRequest.Status.DONE:
        raise ErasureInvalid(f"status: {data_request} was already carried out on {data_request.completed_at:%Y-%m-%d}.")
    email = data_request.email
    try:
        if data_request.kind == DataRequest.Kind.EXPORT:
            document = person_export(email=email)
            summary = {"found": {name: len(document[name]) for name in SECTIONS}}
        else:
            document, summary = None, person_erase(email=email).summary()
    except Exception as exc:
        DataRequest.objects.filter(pk=data_request.pk).update(
            status=DataRequest.Status.FAILED, error=f"{type(exc).__name__}: {exc}"[:2000].replace(email, "…")
        )
        logger.exception("data request #%s failed", data_request.pk)
        raise
    with transaction.atomic():
        data_request.status = DataRequest.Status.DONE
        data_request.completed_at = timezone.now()
        data_request.summary = summary
        data_request.email = ""
        data_request.error = ""
        data_request.save(update_fields=["status", "completed_at", "summary", "email", "error"])
    if data_request.kind == DataRequest.Kind.ERASE:
        sqlite_wal_checkpoint()  # the request itself held the address until the save above
    logger.info("data request #%s (%s) done", data_request.pk, data_request.kind)
    return document


def retention_run(
    *, dry_run: bool = False, batch_size: int = 500, progress: Callable[[RetentionReport], None] | None = None
) -> RetentionReport:
    """Cut settled payloads past EVENT_PAYLOAD_RETENTION_DAYS (the daily schedule and the command)."""
    report = events_scrub_expired(dry_run=dry_run, batch_size=batch_size, progress=progress)
    logger.info("payload retention: %s due, %s scrubbed (dry run: %s)", report.due, report.scrubbed, dry_run)
    return report
