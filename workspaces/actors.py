"""The named system actor: who the audit trail says made an automated change."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from auditlog.context import set_actor
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser


def system_actor() -> AbstractBaseUser:
    """The inactive user that automated changes are recorded under (created on first use)."""
    user, _ = get_user_model().objects.get_or_create(
        username=settings.SYSTEM_ACTOR_USERNAME,
        defaults={"is_active": False, "first_name": "Lifecycle", "last_name": "Engine"},
    )
    return user


@contextmanager
def acting_as_system() -> Iterator[None]:
    """Attribute every audited change inside the block to the system actor."""
    with set_actor(system_actor()):
        yield
