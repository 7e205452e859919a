"""Who gets a workspace's alert: the account's owner, else the customer's kept owner, else a territory
rule, else the next rep in turn.

One owner per customer: the first time a workspace is routed without an account owner, the rep chosen
(territory or round robin) becomes its owner and stays so (`Workspace.owner`); its colleagues on the same
account share that owner. Only the account's owner in Salesforce, or an owner who is no longer an
active rep, changes it. The answer is recorded on the alert with the reason in words, so a rep (or an
admin) can see why an alert landed with them.

A rep who is away (their settings: first and last day, a named backup) keeps their customers, but a new
alert routed to them goes to their backup, the reason in its routing text; when the backup is away too or
no longer an active rep, the alert stays where routing put it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from alerts.models import Alert, Rep, RoutingCursor, TerritoryRule
from alerts.rep_schedule import rep_is_away
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
    one lock and one UPDATE of the cursor, exactly the turns routing them one by one would hand out.

    A workspace routed without an account owner keeps the rep chosen as its owner (one conditional UPDATE
    for the batch, in the caller's transaction); a workspace in the batch that shares an account with
    another gets the same rep.
    """
    kept = _kept_owners(workspaces)
    routes = [
        _by_owner(workspace) or _by_kept_owner(workspace, kept) or _by_territory(workspace) for workspace in workspaces
    ]
    turns = iter(_by_round_robin(sum(route is None for route in routes)))
    chosen: list[Route] = []
    assigned: list[tuple[Workspace, Route]] = []
    for workspace, route in zip(workspaces, routes, strict=True):
        if route is None:
            route = _by_kept_owner(workspace, kept) or next(turns)  # a colleague earlier in this batch
        chosen.append(_keep(workspace, route, kept, assigned))
    _keep_all(assigned)
    now = timezone.now()
    return [_covered(route, now) for route in chosen]  # after _keep: a backup never becomes the owner


def reps_by_user() -> dict[int, Rep]:
    """Every rep (active or not) with their user, by user id: one read serves routing and delivery."""
    return table("reps", lambda: {rep.user_id: rep for rep in Rep.objects.select_related("user")})


def _covered(route: Route, now: datetime) -> Route:
    """The route, or for a rep who is away today, their backup's (if the backup can take it)."""
    rep = reps_by_user().get(route.user.pk) if route.user is not None else None
    if rep is None or not rep_is_away(rep, now):
        return route
    away = f"{rep} is away until {rep.away_until:%Y-%m-%d}"
    backup = next((other for other in reps_by_user().values() if other.pk == rep.backup_id), None)
    if backup is None or not (backup.active and backup.user.is_active) or rep_is_away(backup, now):
        who = f"their backup {backup} is away or inactive" if backup else "they named no backup"
        return Route(route.user, route.routed_by, f"{route.why}; {away}, but {who}")
    return Route(backup.user, Alert.RoutedBy.BACKUP, f"Backup for {rep}: {away}. {route.why}")


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


#: How a route becomes the customer's owner: owners, territories and round robin assign; nothing else.
_ASSIGNING = (Alert.RoutedBy.TERRITORY, Alert.RoutedBy.ROUND_ROBIN)


def _kept_owners(workspaces: Sequence[Workspace]) -> dict[tuple[str, int], tuple[AbstractBaseUser, str]]:
    """The kept owner of each workspace and of each account (its earliest-assigned workspace's), read in
    one query: ("workspace", pk) and ("account", pk) → (rep, since-when in words)."""
    accounts = {ws.account_id for ws in workspaces if ws.account_id is not None}
    kept: dict[tuple[str, int], tuple[AbstractBaseUser, str]] = {}
    if not accounts and all(ws.owner_id is None for ws in workspaces):
        return kept
    owned = (
        Workspace.objects.filter(Q(pk__in=[ws.pk for ws in workspaces if ws.pk]) | Q(account_id__in=accounts))
        .filter(owner__isnull=False)
        .select_related("owner")
        .order_by("owner_since", "pk")
    )
    for ws in owned:
        kept[("workspace", ws.pk)] = (ws.owner, f"since {ws.owner_since:%Y-%m-%d}" if ws.owner_since else "")
        if ws.account_id is not None:
            kept.setdefault(("account", ws.account_id), (ws.owner, f"owner of {ws.workspace_id}"))
    return kept


def _by_kept_owner(workspace: Workspace, kept: dict[tuple[str, int], tuple[AbstractBaseUser, str]]) -> Route | None:
    """The customer's owner, if still an active rep: the workspace's own, else its account's."""
    for scope, key in (("workspace", workspace.pk), ("account", workspace.account_id)):
        found = kept.get((scope, key)) if key is not None else None
        if found is not None and _is_active_rep(found[0]):
            user, since = found
            where = "this customer" if scope == "workspace" else "this account's other workspaces"
            return Route(user, Alert.RoutedBy.OWNER, f"Owner of {where} ({since})" if since else f"Owner of {where}")
    return None


def _keep(
    workspace: Workspace,
    route: Route,
    kept: dict[tuple[str, int], tuple[AbstractBaseUser, str]],
    assigned: list[tuple[Workspace, Route]],
) -> Route:
    """A territory or round-robin choice becomes the customer's owner (written by `_keep_all`)."""
    if route.routed_by not in _ASSIGNING or route.user is None or workspace.pk is None:
        return route
    assigned.append((workspace, route))
    kept[("workspace", workspace.pk)] = (route.user, "assigned now")
    if workspace.account_id is not None:
        kept.setdefault(("account", workspace.account_id), (route.user, f"owner of {workspace.workspace_id}"))
    return route


def _keep_all(assigned: list[tuple[Workspace, Route]]) -> None:
    """One UPDATE for the batch's new owners, each only over the owner its routing saw (none, or one who
    is no longer an active rep): an owner another worker assigned meanwhile stays the owner, and every
    later alert goes to them."""
    if not assigned:
        return
    now = timezone.now()
    seen = Q()
    for workspace, _ in assigned:
        seen |= Q(pk=workspace.pk, owner_id=workspace.owner_id)
    Workspace.objects.filter(seen).update(
        owner=Case(*(When(pk=ws.pk, then=Value(route.user.pk)) for ws, route in assigned)),
        owner_since=now,
        owner_why=Case(*(When(pk=ws.pk, then=Value(route.why[:255])) for ws, route in assigned)),
    )
    for workspace, route in assigned:
        workspace.owner, workspace.owner_since, workspace.owner_why = route.user, now, route.why[:255]


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
