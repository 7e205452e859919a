"""Who gets a workspace's alert: the account's owner, else a territory rule, else the next rep in turn.

The answer is recorded on the alert with the reason in words, so a rep (or an admin) can see why an
alert landed with them.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import F

from alerts.models import Alert, Rep, RoutingCursor, TerritoryRule
from alerts.tables import table
from workspaces.models import Workspace

ROUND_ROBIN = "reps"
#: Country-code TLDs that are not the ISO code of their country.
TLD_COUNTRY = {"uk": "GB"}


@dataclass(frozen=True)
class Route:
    user: AbstractBaseUser | None
    routed_by: str
    why: str


def email_domain_of(workspace: Workspace) -> str:
    email = workspace.email or (workspace.lead.email if workspace.lead_id else "")
    return email.rpartition("@")[2].strip().lower()


def domain_country(domain: str) -> str:
    """ISO country of a domain's country-code TLD ("acme.co.uk" → "GB"); "" for generic TLDs."""
    tld = domain.rpartition(".")[2]
    if len(tld) != 2:
        return ""
    return TLD_COUNTRY.get(tld, tld.upper())


def workspace_route(*, workspace: Workspace) -> Route:
    """Owner, territory, round robin — the first that names an active person wins.

    Round robin takes a row lock on the cursor: call inside a transaction that commits soon.
    """
    return _by_owner(workspace) or _by_territory(workspace) or _by_round_robin()


def _is_active_rep(user: AbstractBaseUser) -> bool:
    if not user.is_active:
        return False
    rep = Rep.objects.filter(user=user).only("active").first()
    return rep is None or rep.active


def _by_owner(workspace: Workspace) -> Route | None:
    account = workspace.account
    if account is None or account.owner is None or not _is_active_rep(account.owner):
        return None
    return Route(account.owner, Alert.RoutedBy.OWNER, f"Owner of account {account.name} ({account.domain or '—'})")


def _matches(rule: TerritoryRule, domain: str, country: str) -> str | None:
    for listed in rule.domain_list():
        if domain == listed or domain.endswith("." + listed):
            return f"domain {domain} is in territory {rule.name}"
    if rule.country and country and rule.country.upper() == country:
        return f"country {country} (from .{domain.rpartition('.')[2]}) is territory {rule.name}"
    return None


def _by_territory(workspace: Workspace) -> Route | None:
    domain = email_domain_of(workspace)
    if not domain:
        return None
    country = domain_country(domain)
    rules = TerritoryRule.objects.filter(active=True, rep__active=True, rep__user__is_active=True)
    for rule in table("territory", lambda: list(rules.select_related("rep__user"))):
        why = _matches(rule, domain, country)
        if why:
            return Route(rule.rep.user, Alert.RoutedBy.TERRITORY, why[0].upper() + why[1:])
    return None


def _by_round_robin() -> Route:
    """The next active rep after the last one given, by a durable counter under a row lock."""
    active = Rep.objects.filter(active=True, user__is_active=True).select_related("user").order_by("pk")
    reps = table("reps", lambda: list(active))
    if not reps:
        return Route(None, Alert.RoutedBy.UNROUTED, "No owner, no territory match and no active rep")
    with transaction.atomic():
        RoutingCursor.objects.get_or_create(name=ROUND_ROBIN)
        cursor = RoutingCursor.objects.select_for_update().get(name=ROUND_ROBIN)
        RoutingCursor.objects.filter(pk=cursor.pk).update(position=F("position") + 1)
    rep = reps[cursor.position % len(reps)]
    return Route(rep.user, Alert.RoutedBy.ROUND_ROBIN, f"Round robin among {len(reps)} active reps")
