"""Who gets a workspace's alert: the account's owner, else a territory rule, else the next rep in turn.

The answer is recorded on the alert with the reason in words, so a rep (or an admin) can see why an
alert landed with them.
"""

from __future__ import annotations

from collections.abc import Sequence
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
    return workspaces_route(workspaces=[workspace])[0]


def workspaces_route(*, workspaces: Sequence[Workspace]) -> list[Route]:
    """workspace_route for each, in order. The round-robin turns are handed out in the list's order with
    one lock and one UPDATE of the cursor, exactly the turns routing them one by one would hand out."""
    routes = [_by_owner(workspace) or _by_territory(workspace) for workspace in workspaces]
    turns = iter(_by_round_robin(sum(route is None for route in routes)))
    return [route or next(turns) for route in routes]


def reps_by_user() -> dict[int, Rep]:
    """Every rep (active or not) with their user, by user id: one read serves routing and delivery."""
    return table("reps", lambda: {rep.user_id: rep for rep in Rep.objects.select_related("user")})


def _is_active_rep(user: AbstractBaseUser) -> bool:
    if not user.is_active:
        return False
    rep = reps_by_user().get(user.pk)
    return rep is None or rep.active


def _by_owner(workspace: Workspace) -> Route | None:
    account = workspace.account
    if account is None or account.owner is None or not _is_active_rep(account.owner):
        return None
    return Route(account.owner, Alert.RoutedBy.OWNER, f"Owner of account {account.name} ({account.domain or '—'})")


def _matches(rule: TerritoryRule, domains: list[str], domain: str, country: str) -> str | None:
    for listed in domains:
        if domain == listed or domain.endswith("." + listed):
            return f"domain {domain} is in territory {rule.name}"
    if rule.country and country and rule.country.upper() == country:
        return f"country {country} (from .{domain.rpartition('.')[2]}) is territory {rule.name}"
    return None


def _territories() -> list[tuple[TerritoryRule, list[str]]]:
    """Active rules of active reps, in priority order, each with its domains parsed."""
    rules = TerritoryRule.objects.filter(active=True, rep__active=True, rep__user__is_active=True)
    return [(rule, rule.domain_list()) for rule in rules.select_related("rep__user")]


def _by_territory(workspace: Workspace) -> Route | None:
    domain = email_domain_of(workspace)
    if not domain:
        return None
    country = domain_country(domain)
    for rule, domains in table("territory", _territories):
        why = _matches(rule, domains, domain, country)
        if why:
            return Route(rule.rep.user, Alert.RoutedBy.TERRITORY, why[0].upper() + why[1:])
    return None


def _by_round_robin(turns: int) -> list[Route]:
    """The next `turns` active reps after the last one given, by a durable counter under a row lock."""
    if not turns:
        return []
    reps = sorted((rep for rep in reps_by_user().values() if rep.active and rep.user.is_active), key=lambda rep: rep.pk)
    if not reps:
        return [Route(None, Alert.RoutedBy.UNROUTED, "No owner, no territory match and no active rep")] * turns
    with transaction.atomic(savepoint=False):  # the caller's transaction keeps the lock until its commit
        position = _locked_cursor_position()
        RoutingCursor.objects.filter(name=ROUND_ROBIN).update(position=F("position") + turns)
    why = f"Round robin among {len(reps)} active reps"
    return [Route(reps[(position + turn) % len(reps)].user, Alert.RoutedBy.ROUND_ROBIN, why) for turn in range(turns)]


def _locked_cursor_position() -> int:
    cursor = RoutingCursor.objects.select_for_update().filter(name=ROUND_ROBIN).values_list("position", flat=True)
    position = cursor.first()
    if position is None:  # the first turn ever: create it (a concurrent creator wins the unique name), then lock
        RoutingCursor.objects.get_or_create(name=ROUND_ROBIN)
        position = cursor.get()
    return position
