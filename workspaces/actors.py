"""The named system actor: who the audit trail says made an automated change."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

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


_acting: ContextVar[bool] = ContextVar("acting_as_system", default=False)


@contextmanager
def acting_as_system() -> Iterator[None]:
    """Attribute every audited change inside the block to the system actor.

    Re-entrant: inside an enclosing block this is a no-op. That saves the actor's lookup per call (a
    task wraps all its workspaces once) and avoids nesting auditlog's set_actor, whose inner exit
    leaves the outer block's later changes without an actor.
    """
    if _acting.get():
        yield
        return
    token = _acting.set(True)
    try:
        with set_actor(system_actor()):
            yield
    finally:
        _acting.reset(token)
