"""What a fired firing's actions do: by default each becomes a dispatch (`triggers.deliveries`, sent by
messaging after the commit); a channel implemented by a higher app has a handler here instead.

One registry, filled at app ready the way messaging's transports are, so the engine never imports the app
above it: the rep alerts (`alerts`) register `rep_alert`, whose handler raises the alert, with its routing and
deliveries, in the firing's transaction (the firing and its alert commit together, or neither). A handler that
`routes` finds its own recipient (the owner, a territory, the next rep in turn): a firing whose actions all
route themselves needs none from its audience, so it is not suppressed as `no_recipient`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # deliveries imports this module; the types only
    from triggers.deliveries import PlannedAction
    from triggers.models import Firing
    from workspaces.models import Workspace

Act = Callable[["Firing", "PlannedAction", "Workspace | None"], None]


@dataclass(frozen=True)
class ActionHandler:
    """Carries out one channel's actions in the firing's transaction (raising on failure rolls the firing back)."""

    channel: str
    act: Act
    routes: bool = False


_handlers: dict[str, ActionHandler] = {}


def action_handler_register(channel: str, act: Act, *, routes: bool = False) -> None:
    """Make `act` carry out the actions of `channel` (at the registering app's ready; again replaces it)."""
    _handlers[channel] = ActionHandler(channel, act, routes)


def handled_channels() -> tuple[str, ...]:
    """The channels a handler carries out (valid in a trigger's actions beside messaging's transports)."""
    return tuple(_handlers)


def actions_route_themselves(actions: Iterable[Mapping[str, Any]]) -> bool:
    """Whether every one of these actions finds its own recipient (and there is at least one)."""
    channels = [action.get("channel") for action in actions]
    return bool(channels) and all(channel in _handlers and _handlers[channel].routes for channel in channels)


def actions_hand_over(
    firing: Firing, actions: Sequence[PlannedAction], workspace: Workspace | None
) -> list[PlannedAction]:
    """Carry out now the actions a handler takes; return the others, which become dispatches."""
    rest = []
    for action in actions:
        handler = _handlers.get(action.channel)
        if handler is None:
            rest.append(action)
        else:
            handler.act(firing, action, workspace)
    return rest
