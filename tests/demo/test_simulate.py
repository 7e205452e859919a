"""The traffic generator of the demo: pure, seeded, and as messy as a real sender."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise

import pytest

from emulators.simulate import EXISTING_ACCOUNTS, FREE_MAIL, SimulatedMessage, simulate_traffic
from events.schemas import parse_provisioning_body

NOW = datetime(2026, 11, 20, 14, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def traffic() -> list[SimulatedMessage]:
    return simulate_traffic(workspaces=300, now=NOW, seed=42)


def by_workspace(messages: list[SimulatedMessage]) -> dict[str, list[SimulatedMessage]]:
    grouped: dict[str, list[SimulatedMessage]] = defaultdict(list)
    for message in messages:
        grouped[message.workspace_id].append(message)
    return grouped


def trials(messages: list[SimulatedMessage]) -> list[dict]:
    return [m.body["data"] for m in messages if m.type == "trial.started" and not m.duplicate]


def test_same_seed_same_messages_other_seed_other_messages():
    first = simulate_traffic(workspaces=40, now=NOW, seed=7)
    assert simulate_traffic(workspaces=40, now=NOW, seed=7) == first
    assert simulate_traffic(workspaces=40, now=NOW, seed=8) != first


def test_every_message_is_valid_per_the_webhook_schemas(traffic):
    for message in traffic:
        parsed = parse_provisioning_body(message.body_json().encode())
        assert parsed.known and parsed.workspace_key == message.workspace_id


def test_one_trial_per_workspace_and_every_workspace_starts_with_it(traffic):
    grouped = by_workspace(traffic)
    assert len(grouped) == 300
    for messages in grouped.values():
        assert messages[0].type == "trial.started"
        assert len({m.msg_id for m in messages if m.type == "trial.started"}) == 1
        trial_at = messages[0].occurred_at
        assert all(m.occurred_at > trial_at for m in messages if m.type != "trial.started")


def test_redeliveries_repeat_an_earlier_message_exactly(traffic):
    first_seen: dict[str, SimulatedMessage] = {}
    duplicates = 0
    for message in traffic:
        if message.msg_id in first_seen:
            assert message.duplicate and message.body == first_seen[message.msg_id].body
            duplicates += 1
        else:
            assert not message.duplicate
            first_seen[message.msg_id] = message
    assert 0.05 * len(first_seen) < duplicates < 0.15 * len(first_seen)


def test_late_events_arrive_after_a_newer_event_of_their_workspace(traffic):
    newest: dict[str, datetime] = {}
    late = 0
    for message in traffic:
        seen = newest.get(message.workspace_id)
        is_late = seen is not None and message.occurred_at < seen
        assert message.late == is_late
        late += is_late
        newest[message.workspace_id] = max(seen or message.occurred_at, message.occurred_at)
    assert late > 10


def test_no_shares_means_no_duplicates_and_history_order():
    messages = simulate_traffic(workspaces=50, now=NOW, seed=3, duplicate_share=0, late_share=0)
    assert not any(m.duplicate or m.late for m in messages)
    assert [m.occurred_at for m in messages] == sorted(m.occurred_at for m in messages)


def test_a_tiny_run_still_has_a_duplicate_and_a_late_event():
    for seed in range(20):
        messages = simulate_traffic(workspaces=3, now=NOW, seed=seed, duplicate_share=0.01, late_share=0.01)
        assert any(m.duplicate for m in messages)
        assert any(m.late for m in messages) or all(
            len({m.occurred_at for m in ms if m.type != "trial.started"}) < 2 for ms in by_workspace(messages).values()
        )


def test_conversions_have_plan_and_mrr_and_churns_follow_them(traffic):
    conversions = [m for m in traffic if m.type == "subscription.converted"]
    assert len(conversions) > 40
    for message in conversions:
        data = message.body["data"]
        assert data["plan"] in ("starter", "team", "business")
        assert Decimal(str(data["mrr"])) > 0
    churned = {m.workspace_id for m in traffic if m.type == "workspace.churned"}
    converted = {m.workspace_id for m in conversions}
    assert len(churned) > 10 and len(churned & converted) > 0.5 * len(churned)


def test_trials_expire_soon_some_already_expired_and_nothing_happens_after_now(traffic):
    ends = [datetime.fromisoformat(data["trial_expires_at"]) for data in trials(traffic)]
    expiring = [end for end in ends if NOW + timedelta(days=1) <= end <= NOW + timedelta(days=10)]
    assert len(expiring) > 0.2 * len(ends)
    assert any(end < NOW for end in ends)
    assert all(m.occurred_at <= NOW for m in traffic)


def test_owners_are_colleagues_free_mail_users_and_existing_customers(traffic):
    domains = [data["email"].split("@")[1] for data in trials(traffic)]
    assert sum(domain in FREE_MAIL for domain in domains) > 0.08 * len(domains)
    assert sum(domain in {d for _, d in EXISTING_ACCOUNTS} for domain in domains) > 0.05 * len(domains)
    company = [d for d in domains if d not in FREE_MAIL]
    assert len(company) - len(set(company)) > 20, "colleagues share their company's domain"
    emails = [data["email"] for data in trials(traffic)]
    assert len(emails) == len(set(emails))


def test_names_are_ones_a_rep_would_believe(traffic):
    """No "Redwood Design Design" workspace, no company called "Freelance" shared by strangers."""
    for data in trials(traffic):
        words = data["workspace_name"].split()
        assert all(a != b for a, b in pairwise(words)), data["workspace_name"]
        if data["email"].split("@")[1] in FREE_MAIL:
            assert "company" not in data, "a free-mail user is a person, not a company"
            assert data["workspace_name"] == f"{data['first_name']}'s workspace"


def test_bad_arguments_are_refused_by_name():
    with pytest.raises(ValueError, match="workspaces"):
        simulate_traffic(workspaces=0, now=NOW, seed=1)
    with pytest.raises(ValueError, match="late_share"):
        simulate_traffic(workspaces=1, now=NOW, seed=1, late_share=1.5)
    with pytest.raises(ValueError, match="timezone"):
        simulate_traffic(workspaces=1, now=NOW.replace(tzinfo=None), seed=1)
