"""Review queue services: what admins do with the questions the engine could not settle."""

from __future__ import annotations

from collections.abc import Sequence

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from linking.models import ReviewItem


def review_items_resolve(*, item_ids: Sequence[int], user: AbstractBaseUser, note: str) -> int:
    """Close open review items with a note saying what was decided; return how many were closed."""
    now = timezone.now()
    with transaction.atomic():
        items = list(ReviewItem.objects.select_for_update().filter(pk__in=item_ids, status=ReviewItem.Status.OPEN))
        for item in items:
            item.status = ReviewItem.Status.RESOLVED
            item.resolution_note = note
            item.resolved_by = user
            item.resolved_at = now
            item.save(update_fields=["status", "resolution_note", "resolved_by", "resolved_at", "updated_at"])
    return len(items)
