"""The database itself carries the invariants: uniqueness, normalisation, valid states."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from events.models import Event
from tests.factories import AccountFactory, ContactFactory, EventFactory, LeadFactory, WorkspaceFactory
from workspaces.models import ReviewItem

pytestmark = pytest.mark.django_db


def refused(create) -> bool:
    try:
        with transaction.atomic():
            create()
    except IntegrityError:
        return True
    return False


def test_event_source_and_external_id_are_unique():
    EventFactory(external_id="msg_1")
    assert refused(lambda: EventFactory(external_id="msg_1"))
    EventFactory(external_id="msg_1", source=Event.Source.STRIPE)  # another source may reuse the id


def test_workspace_id_is_unique():
    WorkspaceFactory(workspace_id="ws_1")
    assert refused(lambda: WorkspaceFactory(workspace_id="ws_1"))


def test_lead_email_is_unique():
    LeadFactory(email="dana@acme.io")
    assert refused(lambda: LeadFactory(email="dana@acme.io"))


@pytest.mark.parametrize("email", ["Dana@acme.io", " dana@acme.io", "dana@ACME.io "])
def test_lead_email_must_be_normalised(email):
    assert refused(lambda: LeadFactory(email=email))


def test_account_domain_is_unique_and_normalised():
    AccountFactory(domain="acme.io")
    assert refused(lambda: AccountFactory(domain="acme.io"))
    assert refused(lambda: AccountFactory(domain="Other.io"))


def test_contact_and_workspace_emails_are_normalised():
    assert refused(lambda: ContactFactory(email="Dana@acme.io"))
    assert refused(lambda: WorkspaceFactory(email="Dana@acme.io"))


def test_workspace_status_and_mrr_are_valid():
    assert refused(lambda: WorkspaceFactory(status="frozen"))
    assert refused(lambda: WorkspaceFactory(mrr=Decimal("-1.00")))


def test_event_status_is_valid():
    assert refused(lambda: EventFactory(status="lost"))


def test_lead_conversion_fields_move_together():
    from django.utils import timezone

    assert refused(lambda: LeadFactory(converted_at=timezone.now()))


def test_one_review_item_per_workspace_and_question():
    workspace = WorkspaceFactory()

    def ask(key: str) -> ReviewItem:
        return ReviewItem.objects.create(workspace=workspace, kind="no_trial_data", dedupe_key=key, reason="r")

    ask("no_trial_data")
    assert refused(lambda: ask("no_trial_data"))
    ask("conflicting_data:email:msg_2")


def test_resolved_review_item_needs_a_time():
    assert refused(
        lambda: ReviewItem.objects.create(kind=ReviewItem.Kind.NO_ACCOUNT_MATCH, reason="r", status="resolved")
    )
