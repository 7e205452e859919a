"""The channel registry: one transport class per kind of outbound message (as healthchecks keeps one
transport class per integration). A transport knows how to send a `Message` and whether its channel is
configured; who gets what, when and how often is the caller's business (alerts, later the triggers).

Adding a channel is one new module with a `Transport` subclass decorated with `@transport_register`,
imported at app ready (messaging's own in messaging/apps.py; a channel implemented higher up registers from
its own app's ready; one whose service lives beside messaging in its layer, such as the Salesforce task
(salesforce/activities.py), registers from an app above both: triggers/channels.py), plus its settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class Message:
    """One rendered message; each transport takes the parts its channel shows."""

    recipient: str  # an email address, a Slack webhook's "webhook", a user id, ...
    subject: str = ""
    text: str = ""
    html: str = ""
    blocks: list[dict[str, Any]] = field(default_factory=list)  # Slack Block Kit
    key: str = ""  # stable per message (idempotency key where the channel takes one)
    # Structured facts a channel sends as fields rather than prose (in-app: workspace_id, trigger,
    # firing_id, cta_url; a Salesforce task: the workspace; email: marketing and its unsubscribe_url);
    # optional: a channel reads only the facts it knows.
    data: dict[str, Any] = field(default_factory=dict)


class TransportError(Exception):
    """The channel did not take the message; `retryable` says whether trying later can help."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class Transport:
    """Base of every channel's transport. Subclasses set `kind` and `label` and implement `send`."""

    kind: ClassVar[str]
    label: ClassVar[str]

    def off_reason(self) -> str | None:
        """Why the channel is off (not configured), or None when it can send."""
        return None

    def skip_reason(self, message: Message) -> str | None:
        """Why this one message is not to be sent at all (its address unsubscribed), or None."""
        return None

    def send(self, message: Message) -> None:
        """Send one message; raise TransportError when the channel did not take it."""
        raise NotImplementedError


_transports: dict[str, type[Transport]] = {}


def transport_register(cls: type[Transport]) -> type[Transport]:
    """Class decorator: make `cls` the transport of its kind (registering again replaces it)."""
    _transports[cls.kind] = cls
    return cls


def transport_for(kind: str) -> Transport:
    """The transport of this channel kind; KeyError names the kinds there are."""
    try:
        return _transports[kind]()
    except KeyError:
        raise KeyError(f"no transport for channel {kind!r}; registered: {', '.join(sorted(_transports))}") from None


def transport_kinds() -> tuple[str, ...]:
    return tuple(sorted(_transports))
