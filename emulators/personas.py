"""Usage personas for the simulated traffic: how a workspace uses the four products over its history.

Each persona is written so that, by the end of the history, its workspace falls into the cohort or stage
it is named after (the shipped definitions, usage/shipped/default.json): frequent but shallow use, deep
use that keeps hitting plan limits, a decline with a ticket spike, a power user of one product, API use
with integrations, broad healthy use, light use, and silence. Pure and seeded like the rest of the
simulation: the same random generator gives the same events.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

DAY = timedelta(days=1)

#: Features per product, as the product names them (`product.feature`).
CATALOGUE: dict[str, tuple[str, ...]] = {
    "esign": ("envelope.send", "envelope.void", "template.create", "signer.remind", "bulk.send", "field.formula"),
    "admin": ("team.invite", "sso.configure", "branding.update", "audit.export", "role.assign"),
    "api": ("api.envelopes", "api.templates", "api.webhooks", "api.users"),
    "sdk": ("sdk.embedded_signing", "sdk.embedded_sending", "sdk.prefill"),
}
INTEGRATIONS = ("integration.salesforce", "integration.hubspot", "integration.zapier", "integration.slack")
LIMITS = ("envelopes", "seats", "api_calls", "templates")
TICKET_SUBJECTS = (
    "Envelopes stuck in sending",
    "Signer cannot open the document",
    "SSO login loops",
    "Bulk send failed halfway",
    "Export is missing fields",
)


@dataclass(frozen=True)
class Persona:
    """How a workspace uses the product; `min_age_days`: the history it needs to show its pattern."""

    name: str
    weight: float
    min_age_days: int
    build: Callable[[Usage], None]


class Usage:
    """Collects one workspace's usage, ticket and plan-limit bodies between its start and its end."""

    def __init__(self, rng: random.Random, workspace_id: str, users: list[str], start: datetime, end: datetime):
        self.rng, self.workspace_id, self.users = rng, workspace_id, users
        self.start, self.end = start, end
        self.bodies: list[dict[str, Any]] = []
        self._tickets = 0

    def days(self, first_ago: float, last_ago: float, share: float) -> list[datetime]:
        """Moments on a `share` of the days from `first_ago` to `last_ago` days before the end (in history)."""
        moments = []
        ago = first_ago
        while ago >= last_ago:
            moment = self.end - ago * DAY + self.rng.uniform(-0.3, 0.3) * DAY
            if self.start < moment < self.end and self.rng.random() < share:
                moments.append(moment)
            ago -= 1
        return moments

    def use(self, at: datetime, product: str, feature: str, *, minutes: float, error_rate: float = 0.03) -> None:
        data = {
            "workspace_id": self.workspace_id,
            "feature": feature,
            "product": product,
            "user_email": self.rng.choice(self.users),
            "count": self.rng.randint(1, 12),
            "duration_seconds": round(max(0.5, self.rng.gauss(minutes, minutes / 3)) * 60, 1),
            "outcome": "error" if self.rng.random() < error_rate else "success",
        }
        self._add("usage.recorded", at, data)

    def session(self, at: datetime, features: list[tuple[str, str]], *, minutes: float, count: int = 2) -> None:
        """A working session: a few features used within the hour."""
        for product, feature in self.rng.sample(features, min(count, len(features))):
            self.use(at + timedelta(minutes=self.rng.uniform(0, 50)), product, feature, minutes=minutes)

    def limit(self, at: datetime) -> None:
        allowed = self.rng.choice((5, 10, 25, 100))
        self._add("plan.limit_reached", at, {"workspace_id": self.workspace_id, "limit": self.rng.choice(LIMITS),
                                              "used": allowed, "allowed": allowed})  # fmt: skip

    def ticket(self, at: datetime, *, resolved_after: timedelta | None = None, priority: str = "normal") -> None:
        self._tickets += 1
        ticket_id = f"{self.workspace_id}-t{self._tickets}"
        self._add("support.ticket_opened", at, {"workspace_id": self.workspace_id, "ticket_id": ticket_id,
                  "priority": priority, "user_email": self.rng.choice(self.users),
                  "subject": self.rng.choice(TICKET_SUBJECTS)})  # fmt: skip
        if resolved_after is not None and at + resolved_after < self.end:
            self._add("support.ticket_resolved", at + resolved_after, {"workspace_id": self.workspace_id,
                      "ticket_id": ticket_id, "satisfaction": self.rng.randint(2, 5)})  # fmt: skip

    def _add(self, event_type: str, at: datetime, data: dict[str, Any]) -> None:
        if self.start < at < self.end:
            self.bodies.append({"type": event_type, "timestamp": at, "data": data})


def _features(*products: str, count: int | None = None, rng: random.Random | None = None) -> list[tuple[str, str]]:
    pairs = [(product, feature) for product in products for feature in CATALOGUE[product]]
    return rng.sample(pairs, min(count, len(pairs))) if rng is not None and count is not None else pairs


def _shallow_frequent(u: Usage) -> None:
    features = _features("esign", count=2, rng=u.rng)
    for at in u.days(29, 0, 0.55) + u.days(6, 0, 0.9):
        u.session(at, features, minutes=6, count=1)


def _plan_limited(u: Usage) -> None:
    features = _features("esign", "admin", count=8, rng=u.rng)
    for at in u.days(29, 0, 0.8):
        u.session(at, features, minutes=25, count=3)
    for at in u.days(25, 0, 0.18) or [u.end - DAY]:
        u.limit(at)
    u.limit(u.end - 2 * DAY)


def _at_risk(u: Usage) -> None:
    features = _features("esign", "admin", count=5, rng=u.rng)
    for at in u.days(28, 14, 0.9):
        u.session(at, features, minutes=40, count=3)
    for at in u.days(13, 0, 0.3):
        u.session(at, features, minutes=6, count=1)
    for ago in sorted(u.rng.sample(range(1, 12), 3)):
        u.ticket(u.end - ago * DAY, priority=u.rng.choice(("high", "urgent", "normal")))


def _single_product_power(u: Usage) -> None:
    features = _features("esign")
    for at in u.days(29, 0, 0.75):
        u.session(at, features, minutes=30, count=4)


def _api_partner(u: Usage) -> None:
    api = _features("api")
    integrations = [("api", name) for name in u.rng.sample(INTEGRATIONS, 3)]
    for at in u.days(29, 0, 0.7):
        u.session(at, api, minutes=3, count=3)
        if u.rng.random() < 0.4:
            product, feature = u.rng.choice(integrations)
            u.use(at, product, feature, minutes=2, error_rate=0.1)
    for product, feature in integrations[:2]:  # each integration works at least once
        u.use(u.end - u.rng.uniform(1, 5) * DAY, product, feature, minutes=2, error_rate=0)
    for at in u.days(29, 0, 0.15):
        u.session(at, _features("esign"), minutes=5, count=1)


def _healthy(u: Usage) -> None:
    features = _features("esign", "admin", "sdk", count=7, rng=u.rng)
    for at in u.days(29, 0, 0.6):
        u.session(at, features, minutes=18, count=3)
    if u.rng.random() < 0.4:
        u.ticket(u.end - u.rng.uniform(5, 25) * DAY, resolved_after=timedelta(hours=u.rng.uniform(2, 40)))


def _light(u: Usage) -> None:
    features = _features("esign", count=3, rng=u.rng)
    for at in u.days(20, 0, 0.25):
        u.session(at, features, minutes=8, count=2)


def _dormant(u: Usage) -> None:
    features = _features("esign", count=3, rng=u.rng)
    for at in u.days(45, 18, 0.4):
        u.session(at, features, minutes=10, count=2)


PERSONAS: tuple[Persona, ...] = (
    Persona("feature_shallow_frequent", 0.13, 6, _shallow_frequent),
    Persona("plan_limited_power_user", 0.11, 14, _plan_limited),
    Persona("at_risk", 0.10, 28, _at_risk),
    Persona("multi_product_candidate", 0.11, 14, _single_product_power),
    Persona("api_partnership_prospect", 0.10, 4, _api_partner),
    Persona("healthy", 0.17, 14, _healthy),
    Persona("light", 0.18, 0, _light),
    Persona("dormant", 0.10, 19, _dormant),
)


def persona_for(rng: random.Random, age_days: float, used: set[str] | None = None) -> Persona:
    """A persona whose pattern fits in the workspace's history so far; with `used`, one not used yet comes
    first, so every persona (and so every cohort) appears as soon as a workspace's history fits it."""
    fitting = [persona for persona in PERSONAS if persona.min_age_days <= age_days]
    fresh = [persona for persona in fitting if used is not None and persona.name not in used]
    chosen = max(fresh, key=lambda persona: persona.min_age_days) if fresh else None
    chosen = chosen or rng.choices(fitting, weights=[persona.weight for persona in fitting])[0]
    if used is not None:
        used.add(chosen.name)
    return chosen


def persona_bodies(
    rng: random.Random, persona: Persona, *, workspace_id: str, users: list[str], start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """The persona's bodies for one workspace, each with a datetime `timestamp` (the caller formats it)."""
    usage = Usage(rng, workspace_id, users, start, end)
    persona.build(usage)
    return usage.bodies
