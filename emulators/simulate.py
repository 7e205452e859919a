"""Realistic provisioning traffic for the demo and tests: a pure, seeded function, no I/O.

`simulate_traffic` plays weeks of self-serve history for N workspaces — trials, usage, conversions,
churn — and returns the webhook messages in the order a sender would deliver them, with the faults a
real sender produces: redeliveries of the same `webhook-id` and events that arrive after a later event
of the same workspace. The engine must come out of it with the same state as if everything had
arrived once and in order (CONTRACT §3). The same arguments always give the same messages.
"""

from __future__ import annotations

import json
import random
import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from emulators.personas import PERSONAS, persona_bodies, persona_for

TRIAL_DAYS = 14

#: Companies that already exist as accounts before the demo starts (the demo seeds them): trials from
#: these domains link to an existing account, and so route to its owner.
EXISTING_ACCOUNTS: tuple[tuple[str, str], ...] = (
    ("Northwind Traders", "northwindtraders.com"),
    ("Contoso Pharmaceuticals", "contosopharma.com"),
    ("Fabrikam Robotics", "fabrikamrobotics.io"),
    ("Tailspin Aviation", "tailspinaviation.com"),
    ("Wingtip Toys", "wingtiptoys.com"),
    ("Alpine Ski House", "alpineskihouse.co"),
    ("Litware Analytics", "litware.io"),
    ("Proseware Health", "prosewarehealth.com"),
)

FREE_MAIL = ("gmail.com", "outlook.com", "yahoo.com", "hotmail.com", "icloud.com", "proton.me")
FIRST_NAMES = (
    "Dana", "Alex", "Priya", "Marcus", "Sofia", "Kenji", "Amara", "Lukas", "Chloe", "Mateo", "Aisha",
    "Noah", "Elena", "Omar", "Hannah", "Ravi", "Grace", "Tomás", "Ingrid", "Samuel", "Mei", "Jonas",
    "Fatima", "Leo", "Nadia", "Oliver", "Yuki", "Isabel", "Kwame", "Freya", "Diego", "Zara", "Ethan",
    "Lina", "Victor", "Maya", "Arjun", "Chiara", "Ben", "Olga",
)  # fmt: skip
LAST_NAMES = (
    "Whitaker", "Okafor", "Nakamura", "Schmidt", "Rossi", "Patel", "Johansson", "García", "Chen",
    "Dubois", "Kowalski", "Haddad", "Murphy", "Silva", "Novak", "Andersen", "Fischer", "Kim", "Moreau",
    "Brennan", "Costa", "Ivanova", "Mensah", "Larsen", "Ortiz", "Tanaka", "Walsh", "Bauer", "Singh",
    "Lindqvist", "Reyes", "Hughes", "Ahmed", "Vogel", "Park", "Eriksen", "Rahman", "Byrne",
)  # fmt: skip
COMPANY_HEADS = (
    "Bluefin", "Copperleaf", "Brightlane", "Northstar", "Ironbark", "Silverline", "Redwood", "Quarry",
    "Lumen", "Harbor", "Pinecrest", "Kestrel", "Orbit", "Meridian", "Sablewood", "Tidewater", "Granite",
    "Juniper", "Vantage", "Cobalt", "Driftwood", "Foxglove", "Helix", "Summit", "Ember", "Larkspur",
)  # fmt: skip
COMPANY_TAILS = (
    "Analytics", "Logistics", "Labs", "Health", "Studio", "Systems", "Foods", "Energy", "Partners",
    "Robotics", "Media", "Capital", "Retail", "Software", "Bio", "Freight", "Design", "Learning",
)  # fmt: skip
TLDS = ("com", "com", "com", "io", "co", "dev")
TEAMS = ("Marketing", "Ops", "Engineering", "Sales", "Design", "Support", "Finance", "Data", "Growth")
CHANNELS = ("organic", "paid_search", "referral", "partner", "api_partnership")
CAMPAIGNS = ("q4-esign-launch", "brand-search", "competitor-switch")
ZONES = ("America/New_York", "America/Los_Angeles", "Europe/London", "Europe/Berlin", "Asia/Tokyo", "Australia/Sydney")
DAY = timedelta(days=1)
CHURN_REASONS = ("too expensive", "switched to a competitor", "missing a feature", "no longer needed", "company closed")
#: Monthly price per seat and typical seats of each paid plan.
PLANS = {
    "starter": (Decimal("19.00"), (1, 5)),
    "team": (Decimal("49.00"), (3, 15)),
    "business": (Decimal("99.00"), (10, 60)),
}

PERSONAS_BY_NAME = {persona.name: persona for persona in PERSONAS}

#: What happens to a workspace over the simulated history, with its share of workspaces.
PROFILES = (
    ("expiring", 0.34),  # trial ends in the next 1-10 days: expiring-trial alerts fire in the demo
    ("expired", 0.10),  # trial ended 1-6 days ago without conversion
    ("fresh", 0.14),  # trial started in the last 3 days
    ("converted", 0.16),  # converted to paid in the last 20 days
    ("customer", 0.10),  # a paying customer for 1-6 months: long usage histories (the behaviour cohorts)
    ("churned", 0.12),  # converted, then churned in the last 30 days (MRR lost)
    ("trial_churned", 0.04),  # gave up during the trial
)


@dataclass(frozen=True)
class SimulatedMessage:
    """One delivery: `msg_id` is the `webhook-id`; a redelivery has the same id and body."""

    msg_id: str
    body: dict[str, Any]
    duplicate: bool = False
    late: bool = False

    @property
    def type(self) -> str:
        return self.body["type"]

    @property
    def workspace_id(self) -> str:
        return self.body["data"]["workspace_id"]

    @property
    def occurred_at(self) -> datetime:
        return datetime.fromisoformat(self.body["timestamp"])

    def body_json(self) -> str:
        """The body exactly as sent and signed (compact)."""
        return json.dumps(self.body, separators=(",", ":"), ensure_ascii=False)


@dataclass
class _Person:
    first_name: str
    last_name: str
    email: str
    company: str


@dataclass
class _Draft:
    """A message before ordering: `key` is its place in the delivery order."""

    message: SimulatedMessage
    key: float
    rank: int = 0
    seq: int = field(default=0)


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _slug(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]", "", ascii_text.lower())


class _World:
    """The people and companies of one simulation, drawn from one seeded RNG."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.emails: set[str] = set()
        self.ids: set[str] = set()
        self.personas: set[str] = set()  # the usage personas given so far (each comes once before repeats)

    def unique_id(self, prefix: str, bits: int) -> str:
        while True:
            value = f"{prefix}{self.rng.getrandbits(bits):0{bits // 4}x}"
            if value not in self.ids:
                self.ids.add(value)
                return value

    def company(self) -> tuple[str, str]:
        if self.rng.random() < 0.14:
            return self.rng.choice(EXISTING_ACCOUNTS)
        name = f"{self.rng.choice(COMPANY_HEADS)} {self.rng.choice(COMPANY_TAILS)}"
        return name, f"{_slug(name)}.{self.rng.choice(TLDS)}"

    def person(self, company: str, domain: str | None) -> _Person:
        first, last = self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES)
        if domain is None:  # a free-mail address: says nothing about the company
            local, domain = f"{_slug(first)}.{_slug(last)}{self.rng.randint(1, 99)}", self.rng.choice(FREE_MAIL)
        else:
            local = self.rng.choice((f"{_slug(first)}.{_slug(last)}", f"{_slug(first)[0]}{_slug(last)}", _slug(first)))
        email, n = f"{local}@{domain}", 2
        while email in self.emails:
            email, n = f"{local}{n}@{domain}", n + 1
        self.emails.add(email)
        return _Person(first, last, email, company)

    def owners(self, count: int) -> list[_Person]:
        """Workspace owners: colleagues share a company domain, some use free mail."""
        people: list[_Person] = []
        while len(people) < count:
            if self.rng.random() < 0.18:
                people.append(self.person("", None))  # a person, not a company: their account bears their name
                continue
            name, domain = self.company()
            colleagues = self.rng.choices((1, 2, 3, 4), weights=(55, 25, 12, 8))[0]
            people += [self.person(name, domain) for _ in range(min(colleagues, count - len(people)))]
        return people


def _timeline(rng: random.Random, profile: str, now: datetime) -> dict[str, datetime]:
    """When the trial started and ended, and when it converted or churned, for a profile."""
    day = timedelta(days=1)
    if profile == "expiring":
        expires = now + rng.uniform(1.05, 10.0) * day
        return {"start": expires - TRIAL_DAYS * day, "expires": expires}
    if profile == "expired":
        expires = now - rng.uniform(1.0, 6.0) * day
        return {"start": expires - TRIAL_DAYS * day, "expires": expires}
    if profile == "fresh":
        start = now - rng.uniform(0.02, 3.0) * day
        return {"start": start, "expires": start + TRIAL_DAYS * day}
    if profile == "converted":
        converted = now - rng.uniform(0.02, 20.0) * day
        start = converted - rng.uniform(1.0, 13.0) * day
        return {"start": start, "expires": start + TRIAL_DAYS * day, "converted": converted}
    if profile == "customer":
        converted = now - rng.uniform(30.0, 180.0) * day
        start = converted - rng.uniform(1.0, 13.0) * day
        return {"start": start, "expires": start + TRIAL_DAYS * day, "converted": converted}
    if profile == "churned":
        churned = now - rng.uniform(0.02, 30.0) * day
        converted = churned - rng.uniform(20.0, 120.0) * day
        start = converted - rng.uniform(1.0, 13.0) * day
        return {"start": start, "expires": start + TRIAL_DAYS * day, "converted": converted, "churned": churned}
    churned = now - rng.uniform(0.02, 10.0) * day
    start = churned - rng.uniform(0.5, 12.0) * day
    return {"start": start, "expires": start + TRIAL_DAYS * day, "churned": churned}


def _workspace_events(world: _World, owner: _Person, profile: str, now: datetime) -> list[dict[str, Any]]:
    """A workspace's history as bodies, earliest first; the first is always its trial.started."""
    rng, when = world.rng, _timeline(world.rng, profile, now)
    workspace_id = world.unique_id("ws_", 40)
    # "Redwood Design Design" is no name a customer gives a workspace: a team the company is not named after.
    team = rng.choice([team for team in TEAMS if team not in owner.company.split()])
    name = f"{owner.company} {team}" if owner.company else f"{owner.first_name}'s workspace"
    trial = {
        "workspace_id": workspace_id,
        "email": owner.email,
        "workspace_name": name,
        "first_name": owner.first_name,
        "last_name": owner.last_name,
        "plan": rng.choices(tuple(PLANS), weights=(45, 40, 15))[0],  # the plan they trial
        "trial_expires_at": _rfc3339(when["expires"]),
        "acquisition_channel": rng.choices(CHANNELS, weights=(35, 25, 15, 15, 10))[0],
        "timezone": rng.choice(ZONES),
    }
    if trial["acquisition_channel"] == "paid_search":
        trial["campaign"] = rng.choice(CAMPAIGNS)
    if owner.company:
        trial["company"] = owner.company
    bodies = [{"type": "trial.started", "timestamp": _rfc3339(when["start"]), "data": trial}]
    end = when.get("churned", now)
    domain = owner.email.split("@")[1]
    colleagues = [owner.email]
    if owner.company and domain not in FREE_MAIL:  # teammates share the company's domain
        colleagues += [f"{_slug(first)}@{domain}" for first in rng.sample(FIRST_NAMES, 2)]
    # How it uses the products: a persona whose pattern fits its history (a churned one used it lightly).
    age = (end - when["start"]) / DAY
    persona = PERSONAS_BY_NAME["light"] if "churned" in when else persona_for(rng, age, world.personas)
    for body in persona_bodies(rng, persona, workspace_id=workspace_id, users=colleagues, start=when["start"], end=end):
        bodies.append({**body, "timestamp": _rfc3339(body["timestamp"])})
    if "converted" in when:
        bodies.append({"type": "subscription.converted", "timestamp": _rfc3339(when["converted"]),
                       "data": _conversion(world, workspace_id, owner.email)})  # fmt: skip
    if "churned" in when:
        churn = {"workspace_id": workspace_id, "email": owner.email, "churned_at": _rfc3339(when["churned"]),
                 "reason": rng.choice(CHURN_REASONS)}  # fmt: skip
        bodies.append({"type": "workspace.churned", "timestamp": _rfc3339(when["churned"]), "data": churn})
    return sorted(bodies, key=lambda body: body["timestamp"])


def _conversion(world: _World, workspace_id: str, email: str) -> dict[str, Any]:
    rng = world.rng
    plan = rng.choices(tuple(PLANS), weights=(45, 40, 15))[0]
    price, (low, high) = PLANS[plan]
    mrr = price * rng.randint(low, high)
    return {
        "workspace_id": workspace_id,
        "email": email,
        "plan": plan,
        # Mostly decimal strings as the contract shows; some senders send numbers, which is allowed too.
        "mrr": f"{mrr:.2f}" if rng.random() < 0.85 else float(mrr),
        "currency": rng.choices(("USD", "EUR", "GBP"), weights=(80, 14, 6))[0],
        "subscription_id": world.unique_id("sub_", 56),
        "billing_interval": rng.choices(("month", "year"), weights=(75, 25))[0],
    }


def _drafts(world: _World, workspaces: int, now: datetime) -> list[_Draft]:
    """Every message once, keyed in event-time order (a replay of the history)."""
    names, weights = zip(*PROFILES, strict=True)
    bodies: list[dict[str, Any]] = []
    for owner in world.owners(workspaces):
        profile = world.rng.choices(names, weights=weights)[0]
        bodies += _workspace_events(world, owner, profile, now)
    rank = {"trial.started": 0, "subscription.converted": 2, "workspace.churned": 3}  # behaviour events: 1
    bodies.sort(key=lambda body: (body["timestamp"], rank.get(body["type"], 1), body["data"]["workspace_id"]))
    return [_Draft(SimulatedMessage(world.unique_id("msg_", 96), body), float(i)) for i, body in enumerate(bodies)]


def _delay_some(rng: random.Random, drafts: list[_Draft], share: float) -> None:
    """Hold back a share of events until after a later event of their workspace (never a trial.started)."""
    by_workspace: dict[str, list[_Draft]] = defaultdict(list)
    for draft in drafts:
        by_workspace[draft.message.workspace_id].append(draft)
    candidates = [
        (draft, later)
        for history in by_workspace.values()
        for i, draft in enumerate(history)
        if draft.message.type != "trial.started"
        for later in [history[i + 1 :]]
        if any(other.message.body["timestamp"] > draft.message.body["timestamp"] for other in later)
    ]
    chosen = [pair for pair in candidates if rng.random() < share]
    if share > 0 and not chosen and candidates:
        chosen = [rng.choice(candidates)]  # a short run still shows one
    for draft, later in chosen:
        newer = [other for other in later if other.message.body["timestamp"] > draft.message.body["timestamp"]]
        draft.key = rng.choice(newer).key + rng.uniform(0.01, 30.0)


def _duplicate_some(rng: random.Random, drafts: list[_Draft], share: float) -> list[_Draft]:
    """Redeliver a share of messages, soon or much later, with the same webhook-id and body."""
    chosen = [draft for draft in drafts if rng.random() < share]
    if share > 0 and not chosen and drafts:
        chosen = [rng.choice(drafts)]
    copies = [
        _Draft(replace(draft.message, duplicate=True), draft.key + rng.choice((0.5, rng.uniform(1.0, 60.0))), 1)
        for draft in chosen
    ]
    return drafts + copies


def _mark_late(ordered: list[SimulatedMessage]) -> list[SimulatedMessage]:
    """Flag what arrives after a later event of its workspace: the definition of a late event."""
    newest: dict[str, str] = {}
    marked = []
    for message in ordered:
        seen = newest.get(message.workspace_id, "")
        marked.append(replace(message, late=message.body["timestamp"] < seen))
        newest[message.workspace_id] = max(seen, message.body["timestamp"])
    return marked


def simulate_traffic(
    *, workspaces: int, now: datetime, seed: int, duplicate_share: float = 0.1, late_share: float = 0.05
) -> list[SimulatedMessage]:
    """The deliveries for `workspaces` self-serve workspaces whose history ends at `now`, in send order.

    Every workspace's first delivery is its trial.started; `duplicate_share` of messages are delivered
    twice and `late_share` of later events arrive after a newer event of their workspace (at least one
    of each when the share is above zero, so even a short run shows them).
    """
    if workspaces < 1:
        raise ValueError("workspaces must be at least 1")
    for name, share in (("duplicate_share", duplicate_share), ("late_share", late_share)):
        if not 0 <= share <= 1:
            raise ValueError(f"{name} must be between 0 and 1, got {share}")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    rng = random.Random(seed)
    drafts = _drafts(_World(rng), workspaces, now)
    _delay_some(rng, drafts, late_share)
    drafts = _duplicate_some(rng, drafts, duplicate_share)
    for seq, draft in enumerate(drafts):
        draft.seq = seq
    ordered = sorted(drafts, key=lambda draft: (draft.key, draft.rank, draft.seq))
    return _mark_late([draft.message for draft in ordered])
