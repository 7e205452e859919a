"""Trigger messages never go to an erased person: the "user" audience resolves to nobody when the address
left is erasure's placeholder (`erased-<n>@…`), so the firing is recorded as suppressed, "Nobody to send
to", instead of mailing a made-up address at their company's domain. Registered at ready
(`triggers.audience.audience_register`): the trigger engine is below privacy and cannot ask it."""

from __future__ import annotations

from privacy.identity import is_placeholder
from triggers.audience import Recipient, workspace_zone
from workspaces.models import Workspace


def user_unless_erased(workspace: Workspace, user_email: str, team: str) -> Recipient | None:
    """The event's user, else the workspace's owner (as the built-in resolver), unless erased."""
    email = (user_email or workspace.email or "").strip().lower()
    if not email or is_placeholder(email):
        return None
    return Recipient(key=f"email:{email}", address=email, zone=workspace_zone(workspace))
