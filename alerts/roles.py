"""Who is an alerts admin, who holds staff powers, who is an API service account, and where admin
alerts go (DESIGN "Roles")."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Q

from alerts.tables import table

ADMINS_GROUP = "Lifecycle admins"
REPS_GROUP = "Reps"
AUDITORS_GROUP = "Auditors"
#: Members read the whole read API by token and nothing else (`manage.py api_token create NAME --service`).
API_SERVICES_GROUP = "API services"


def user_group_names(user: AbstractBaseUser) -> frozenset[str]:
    """The user's group names, read once per user object (one request): every role check asks."""
    names = getattr(user, "_engine_group_names", None)
    if names is None:
        names = frozenset(user.groups.values_list("name", flat=True)) if user.is_authenticated else frozenset()
        user._engine_group_names = names
    return names


def user_is_alerts_admin(user: AbstractBaseUser) -> bool:
    """Superusers, members of "Lifecycle admins" and staff allowed to change alerts see every alert;
    reps only their own."""
    if not (user.is_authenticated and user.is_active):
        return False
    if user.is_superuser or (user.is_staff and user.has_perm("alerts.change_alert")):
        return True
    return ADMINS_GROUP in user_group_names(user)


def user_is_auditor(user: AbstractBaseUser) -> bool:
    """Staff in "Auditors": read-only on every record in the admin, so on the whole read API too."""
    if not (user.is_authenticated and user.is_active and user.is_staff):
        return False
    return AUDITORS_GROUP in user_group_names(user)


def user_is_api_service(user: AbstractBaseUser) -> bool:
    """An account for another system: reads every workspace, event and alert through the read API.

    Never staff: a staff account has a second factor to pass (STAFF_TOTP_REQUIRED) that a token cannot.
    """
    if not (user.is_authenticated and user.is_active) or user.is_staff or user.is_superuser:
        return False
    return API_SERVICES_GROUP in user_group_names(user)


def user_has_staff_powers(user: AbstractBaseUser) -> bool:
    """Staff (the admin, /ops/, /metrics) or an alerts admin (admin visibility on the rep pages and the
    API): what STAFF_TOTP_REQUIRED guards with a second factor."""
    if not (user.is_authenticated and user.is_active):
        return False
    return user.is_staff or user.is_superuser or user_is_alerts_admin(user)


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
