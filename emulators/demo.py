"""The demo's people and companies: an admin, three reps, and the accounts they already own.

Only `make demo` uses this (on its own database). Trials from the accounts' domains route to the
owning rep; the rest go by territory rules or round robin among the reps.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser, Group
from django.db import transaction

from alerts.models import Rep
from emulators.simulate import EXISTING_ACCOUNTS
from workspaces.models import Account

ADMIN_USERNAME = "admin"
REPS_GROUP = "Reps"  # DESIGN.md "Roles"
#: (username, first name, last name, alert delivery)
DEMO_REPS = (
    ("ann", "Ann", "Fischer", Rep.Delivery.INSTANT),
    ("bo", "Bo", "Lindqvist", Rep.Delivery.INSTANT),
    ("cy", "Cy", "Okafor", Rep.Delivery.DIGEST),
)
EMAIL_DOMAIN = "sales.lifecycle.test"


@dataclass(frozen=True)
class DemoLogins:
    admin: str
    reps: tuple[str, ...]
    password: str


def _user(username: str, *, password: str, first_name: str = "", last_name: str = "") -> AbstractUser:
    user, _ = get_user_model().objects.get_or_create(username=username)
    user.first_name, user.last_name = first_name, last_name
    user.email = f"{username}@{EMAIL_DOMAIN}"
    user.is_active = True
    user.set_password(password)
    user.save()
    return user


@transaction.atomic
def demo_seed(*, password: str) -> DemoLogins:
    """Create (or reset) the demo's users and the accounts they own; every login gets `password`."""
    admin = _user(ADMIN_USERNAME, password=password, first_name="Avery", last_name="Admin")
    admin.is_staff = admin.is_superuser = True
    admin.save(update_fields=["is_staff", "is_superuser"])
    reps_group, _ = Group.objects.get_or_create(name=REPS_GROUP)
    reps = []
    for username, first, last, delivery in DEMO_REPS:
        user = _user(username, password=password, first_name=first, last_name=last)
        user.groups.add(reps_group)
        Rep.objects.update_or_create(user=user, defaults={"active": True, "delivery": delivery})
        reps.append(user)
    for index, (name, domain) in enumerate(EXISTING_ACCOUNTS):
        Account.objects.update_or_create(domain=domain, defaults={"name": name, "owner": reps[index % len(reps)]})
    return DemoLogins(admin=ADMIN_USERNAME, reps=tuple(user.username for user in reps), password=password)
