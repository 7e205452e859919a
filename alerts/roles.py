"""Who is an alerts admin and where admin alerts go (DESIGN "Roles")."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Q

from alerts.tables import table

ADMINS_GROUP = "Lifecycle admins"
REPS_GROUP = "Reps"


def user_is_alerts_admin(user: AbstractBaseUser) -> bool:
    """Superusers, members of "Lifecycle admins" and staff allowed to change alerts see every alert;
    reps only their own."""
    if not (user.is_authenticated and user.is_active):
        return False
    if user.is_superuser or (user.is_staff and user.has_perm("alerts.change_alert")):
        return True
    return user.groups.filter(name=ADMINS_GROUP).exists()


def admin_recipients() -> list[tuple[AbstractBaseUser | None, str]]:
    """(user, address) for admin alerts: active admins with an email, then ALERT_ADMIN_EMAILS."""
    return table("admin_recipients", _admin_recipients)


def _admin_recipients() -> list[tuple[AbstractBaseUser | None, str]]:
    users = (
        get_user_model()
        .objects.filter(Q(is_superuser=True) | Q(groups__name=ADMINS_GROUP), is_active=True)
        .exclude(email="")
        .distinct()
        .order_by("pk")
    )
    found: dict[str, AbstractBaseUser | None] = {}
    for user in users:
        found.setdefault(user.email.strip().lower(), user)
    for address in settings.ALERT_ADMIN_EMAILS:
        found.setdefault(address.strip().lower(), None)
    return [(user, address) for address, user in found.items()]
