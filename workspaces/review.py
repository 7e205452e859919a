"""The review queue's writes that every app needs: open a question once, and keep the workspace's
review flag (needs_review, review_reasons) the mirror of its open questions."""

from __future__ import annotations

from collections.abc import Sequence

from workspaces.models import ReviewItem, Workspace


def workspace_refresh_review_flag(
    *, workspace: Workspace, items: Sequence[ReviewItem] | None = None, unsaved: set[str] | None = None
) -> None:
    """needs_review and review_reasons mirror the workspace's open review items (`items`: all of them,
    current, when the caller holds them already). With `unsaved` the changed fields are added to it
    for the caller's one save instead of saved here."""
    if items is None:
        items = ReviewItem.objects.filter(workspace=workspace)
    opened = sorted(
        (item for item in items if item.status == ReviewItem.Status.OPEN), key=lambda i: (i.created_at, i.pk)
    )
    review_flag_set(workspace, [item.reason for item in opened], unsaved)


def review_flag_set(workspace: Workspace, reasons: list[str], unsaved: set[str] | None) -> None:
    if workspace.needs_review == bool(reasons) and workspace.review_reasons == reasons:
        return
    workspace.needs_review = bool(reasons)
    workspace.review_reasons = reasons
    if unsaved is not None:
        unsaved.update(("needs_review", "review_reasons"))
    else:
        workspace.save(update_fields=["needs_review", "review_reasons", "updated_at"])


def review_item_raise(
    *, kind: str, dedupe_key: str, reason: str, workspace: Workspace | None = None, event_pks: Sequence[int] = ()
) -> ReviewItem:
    """Open a question raised outside linking (a failed event, a write Salesforce refused), once per key."""
    item, _ = ReviewItem.objects.get_or_create(
        workspace=workspace, dedupe_key=dedupe_key, defaults={"kind": kind, "reason": reason}
    )
    if event_pks:
        item.events.add(*event_pks)
    if workspace is not None:
        workspace_refresh_review_flag(workspace=workspace)
    return item
