"""Persisting folded state: only the difference is written, so the audit trail shows real changes."""

from __future__ import annotations

from typing import Any

from workspaces.lifecycle import WorkspaceState
from workspaces.models import Workspace

_UNREAD: Any = object()


def workspace_apply_state(
    *, state: WorkspaceState, save: bool = True, workspace: Workspace | None = _UNREAD
) -> tuple[Workspace, dict[str, Any]]:
    """Create or update the workspace to match `state`; return it and {field: new value} changed.

    Call under the workspace's processing lock. A state with no status (no lifecycle event yet)
    is not persisted. With `save` False nothing is written: the caller saves the workspace once with
    its links and review flag (one INSERT or UPDATE, one audit entry, instead of up to three).
    `workspace`: the row with its links when the caller has read it under the lock (None: there is none).
    """
    if state.status is None:
        raise ValueError(f"workspace {state.workspace_id} has no lifecycle event to apply")
    wanted = state.fields()
    # The links come along (one query): linking and the outbox read them next.
    if workspace is _UNREAD:
        workspace = (
            Workspace.objects.select_related("lead", "account", "contact")
            .filter(workspace_id=state.workspace_id)
            .first()
        )
    if workspace is None:
        workspace = Workspace(workspace_id=state.workspace_id, **wanted)
        if save:
            workspace.save()
        return workspace, wanted
    changed = {name: value for name, value in wanted.items() if getattr(workspace, name) != value}
    if changed:
        for name, value in changed.items():
            setattr(workspace, name, value)
        if save:
            workspace.save(update_fields=[*changed, "updated_at"])
    return workspace, changed
