"""Who a firing is for, and the time zone its quiet hours are counted in.

The user, the owner rep and the CSM (the account's, set in the admin) are resolved here from the
workspace; a team is a named address. Apps above (a rep's own time zone lives in `alerts.Rep`) may
replace a resolver at ready with `audience_register`, the way transports register with messaging: the
engine never imports them. An audience nobody resolves gives no recipient, and the firing says so (`no_recipient`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from workspaces.models import Workspace


@dataclass(frozen=True)
class Recipient:
    """One person or team: `key` is what the person cap counts (email:…, user:…, team:…)."""

    key: str
    address: str
    zone: str = "UTC"


#: What the built-in resolvers read of a workspace: load workspaces for them with
#: `select_related(*AUDIENCE_RELATED)` so resolving a batch's recipients reads nothing more.
AUDIENCE_RELATED = ("account__owner", "account__csm", "owner")

Resolver = Callable[[Workspace, str, str], "Recipient | None"]  # (workspace, user_email, team) → recipient
_resolvers: dict[str, Resolver] = {}


def audience_register(audience: str, resolver: Resolver) -> None:
    """Make `resolver` answer for an audience (replacing the built-in one, e.g. owner reps with their zone)."""
    _resolvers[audience] = resolver


def workspace_zone(workspace: Workspace | None) -> str:
    return (workspace.timezone if workspace is not None else "") or "UTC"


def _user(workspace: Workspace, user_email: str, team: str) -> Recipient | None:
    """The event's user, else the workspace's owner, in the workspace's time zone."""
    email = (user_email or workspace.email or "").strip().lower()
    return Recipient(key=f"email:{email}", address=email, zone=workspace_zone(workspace)) if email else None


def _owner_rep(workspace: Workspace, user_email: str, team: str) -> Recipient | None:
    """The account's owner in Salesforce, else the kept owner (the same rule as alert routing)."""
    account = workspace.account
    owner = (account.owner if account is not None else None) or workspace.owner
    if owner is None:
        return None
    return Recipient(key=f"user:{owner.pk}", address=owner.email or owner.get_username())


def _csm(workspace: Workspace, user_email: str, team: str) -> Recipient | None:
    """The account's customer success manager; nobody when the workspace has no account or it has no CSM."""
    account = workspace.account
    csm = account.csm if account is not None else None
    if csm is None:
        return None
    return Recipient(key=f"user:{csm.pk}", address=csm.email or csm.get_username())


def _team(workspace: Workspace, user_email: str, team: str) -> Recipient | None:
    return Recipient(key=f"team:{team}", address=team) if team else None


_BUILT_IN: dict[str, Resolver] = {"user": _user, "owner_rep": _owner_rep, "csm": _csm, "team": _team}


def recipient_for(
    audience: str, workspace: Workspace | None, *, user_email: str = "", team: str = ""
) -> Recipient | None:
    """The recipient of an audience for a workspace, or None when there is nobody (or no workspace)."""
    if workspace is None:
        return None
    resolver = _resolvers.get(audience) or _BUILT_IN.get(audience)
    return resolver(workspace, user_email, team) if resolver is not None else None
