"""A fired firing's actions become dispatches (messaging.Dispatch), in the firing's transaction.

Each planned action (`firing_planned_actions`) is rendered now from its template and inserted as one row
under the action's stable key, so a repeat (a replay, a second worker, a release) adds nothing; messaging
sends the rows after the commit. Templates are plain Django templates keyed by the action's template key:
`triggers/<key>.subject.txt`, `triggers/<key>.txt` and, for email, `triggers/<key>.html`. An action whose
template is missing is not sent with made-up words: its row is `dead`, naming the missing file, and the
failure is counted in the error ledger. An email action marked `marketing` gets the unsubscribe footer and
link (messaging/unsubscribe.py); messaging skips it when the address has unsubscribed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.template import Context, TemplateDoesNotExist
from django.template.loader import get_template, render_to_string

from failures.services import error_record
from messaging.delivery import dispatches_create
from messaging.models import Dispatch
from messaging.unsubscribe import html_with_footer, marketing_footer
from triggers.actions import actions_hand_over
from triggers.models import Firing
from workspaces.models import Workspace

#: The Slack transport posts to its one channel webhook.
SLACK_RECIPIENT = "webhook"


@dataclass(frozen=True)
class PlannedAction:
    """One action a fired firing asks for: the channel kind (messaging's registry), its template and params,
    and who gets it. `firing_dispatches_plan` turns each into a dispatch; `key` is stable per firing and channel,
    so a channel that deduplicates (the in-app webhook-id, CONTRACT §9) sees retries as one."""

    firing_id: int
    channel: str
    template: str
    params: dict[str, Any]
    recipient: str
    key: str
    marketing: bool = False


def action_key(firing_id: int, channel: str, index: int) -> str:
    """The stable key of a firing's action: its dispatch's key, the in-app webhook-id, the ticket's id."""
    return f"firing-{firing_id}-{channel}-{index}"


def firing_planned_actions(firing: Firing) -> list[PlannedAction]:
    """The actions a fired firing plans (none for a suppressed or still-deferred one)."""
    if firing.status != Firing.Status.FIRED:
        return []
    return [
        PlannedAction(
            firing_id=firing.pk,
            channel=action["channel"],
            template=action["template"],
            params=action.get("params") or {},
            recipient=firing.recipient,
            key=action_key(firing.pk, action["channel"], index),
            marketing=bool(action.get("marketing")),
        )
        for index, action in enumerate(firing.actions)
    ]


def firing_dispatches_plan(firing: Firing, workspace: Workspace | None = None) -> list[str]:
    """Insert a dispatch per planned action of a fired firing (none otherwise); the keys. `workspace`: the
    firing's, when the caller has it (else it is read)."""
    loaded = {firing.workspace_key: workspace} if workspace is not None else {}
    return firings_dispatches_plan([firing], loaded)


def firings_dispatches_plan(firings: Sequence[Firing], workspaces: Mapping[str, Workspace | None]) -> list[str]:
    """`firing_dispatches_plan` for firings decided together: their dispatches rendered and inserted in one
    statement (one send task on the commit); the workspaces the caller has not loaded are read together."""
    planned = [(firing, actions) for firing in firings if (actions := firing_planned_actions(firing))]
    if not planned:
        return []
    loaded = dict(workspaces)
    if missing := sorted({firing.workspace_key for firing, _ in planned} - {k for k, w in loaded.items() if w}):
        loaded.update((w.workspace_id, w) for w in Workspace.objects.filter(workspace_id__in=missing))
    addresses: dict[str, str] = {}
    rows = []
    for firing, actions in planned:
        workspace = loaded.get(firing.workspace_key)
        actions = actions_hand_over(firing, actions, workspace)  # a registered channel's handler (triggers/actions.py)
        if not actions:
            continue
        if firing.recipient not in addresses:
            addresses[firing.recipient] = recipient_address(firing.recipient)
        rows += [_row(firing, action, workspace, addresses[firing.recipient]) for action in actions]
    return dispatches_create(rows)


def recipient_address(recipient: str) -> str:
    """The address behind a firing's recipient key: email:… is the address, user:<id> that user's email,
    team:… the team's address."""
    kind, _, value = recipient.partition(":")
    if kind == "user":
        user = get_user_model().objects.filter(pk=value).first() if value.isdigit() else None
        return (user.email or "") if user is not None else ""
    return value


def _row(firing: Firing, action: PlannedAction, workspace: Workspace | None, address: str) -> Dispatch:
    row = Dispatch(
        key=action.key,
        source="firing",
        source_id=firing.pk,
        channel=action.channel,
        recipient=SLACK_RECIPIENT if action.channel == "slack" else address,
        template=action.template,
        next_attempt_at=firing.fired_at,
    )
    footer = marketing_footer(action.key) if action.marketing and action.channel == "email" else None
    context = _context(firing, action, workspace) | {"unsubscribe_url": footer.url if footer else ""}
    try:
        row.subject = " ".join(_plain(f"triggers/{action.template}.subject.txt", context).split())[:255]
        row.text = _plain(f"triggers/{action.template}.txt", context).strip()
        if action.channel == "email":
            row.html = render_to_string(f"triggers/{action.template}.html", context)
    except TemplateDoesNotExist as exc:
        row.status, row.next_attempt_at, row.last_error = Dispatch.Status.DEAD, None, f"template {exc} is missing"
        error_record(source="delivery", kind="trigger template missing", message=row.last_error, obj=firing,
                     workspace_key=firing.workspace_key)  # fmt: skip
        return row
    row.data = {"workspace_id": firing.workspace_key, "trigger": firing.trigger.key, "firing_id": str(firing.pk)}
    if action.channel == "in_app":
        row.data["cta_url"] = str(action.params.get("cta_url", ""))
    if footer is not None:
        row.text, row.html = f"{row.text}\n\n{footer.text}", html_with_footer(row.html, footer.html)
        row.data |= {"marketing": True, "unsubscribe_url": footer.url}
    return row


def _plain(name: str, context: dict[str, Any]) -> str:
    """A plain-text part (subject, text): not HTML-escaped, so "O'Reilly & Co" stays as it is written."""
    return get_template(name).template.render(Context(context, autoescape=False))


def _context(firing: Firing, action: PlannedAction, workspace: Workspace | None) -> dict[str, Any]:
    """What a template may use: the workspace, the trigger, the firing and its why, the action's params."""
    return {
        "workspace": workspace,
        "workspace_id": firing.workspace_key,
        "trigger": firing.trigger,
        "firing": firing,
        "explanation": firing.explanation,
        "params": action.params,
        "channel": action.channel,
    }
