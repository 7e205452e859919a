"""CONTRACT §3 linking and §5 Marketo: leads, accounts, contacts, conversion once, and the review queue.

Most tests drive the whole processor (store events → `workspace_process`), so what is checked is what
production does; the matching rules that need no events call `workspace_link` directly.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AbstractBaseUser

from linking.freemail import freemail_domains
from linking.services import review_item_link, review_items_resolve, workspace_link
from tests.factories import AccountFactory, ContactFactory, LeadFactory, WorkspaceFactory
from tests.linking.helpers import (
    PAID_AT,
    TRIAL_AT,
    converted,
    lifecycle,
    marketo_lead,
    process,
    trial,
)
from workspaces.models import Account, Contact, Lead, ReviewItem

pytestmark = pytest.mark.django_db

NO_MATCH = ReviewItem.Kind.NO_ACCOUNT_MATCH


def open_items(workspace, kind: str = NO_MATCH) -> list[ReviewItem]:
    return list(ReviewItem.objects.filter(workspace=workspace, kind=kind, status=ReviewItem.Status.OPEN))


# --- Leads ------------------------------------------------------------------------------------


def test_lead_is_matched_case_insensitively_and_trimmed():
    # given
    lead = LeadFactory(email="dana@acme.io")

    # when
    workspace = process(trial(" Dana@Acme.io "))

    # then
    assert workspace.email == "dana@acme.io"
    assert workspace.lead == lead
    assert Lead.objects.count() == 1


def test_lead_is_created_as_self_serve_trial_when_none_exists():
    # given
    workspace = WorkspaceFactory(email="dana@acme.io", first_name="Dana", last_name="Reyes", company="Acme")

    # when
    workspace_link(workspace=workspace)

    # then
    lead = Lead.objects.get()
    assert workspace.lead == lead
    assert lead.email == "dana@acme.io"
    assert lead.lead_source == "Self-Serve Trial"
    assert (lead.first_name, lead.last_name, lead.company) == ("Dana", "Reyes", "Acme")


def test_plus_address_is_another_lead():
    # given
    LeadFactory(email="dana@acme.io")
    workspace = WorkspaceFactory(email="dana+test@acme.io")

    # when
    workspace_link(workspace=workspace)

    # then
    assert workspace.lead.email == "dana+test@acme.io"
    assert Lead.objects.count() == 2


# --- Accounts ---------------------------------------------------------------------------------


def test_account_is_matched_by_email_domain():
    # given
    account = AccountFactory(domain="acme.io")
    workspace = WorkspaceFactory(email="dana@acme.io")

    # when
    questions = workspace_link(workspace=workspace)

    # then
    assert workspace.account == account
    assert questions == []


def test_subdomain_does_not_match_the_parent_domain_account():
    # given
    AccountFactory(domain="acme.io")
    workspace = WorkspaceFactory(email="dana@eng.acme.io")

    # when
    questions = workspace_link(workspace=workspace)

    # then
    assert workspace.account is None
    assert [(q.kind, q.key) for q in questions] == [(NO_MATCH, "no_account_match:eng.acme.io")]


@pytest.mark.parametrize(
    "domain", ["gmail.com", "outlook.com", "yahoo.co.uk", "hotmail.com", "icloud.com", "proton.me"]
)
def test_freemail_never_matches_an_account_even_one_with_that_domain(domain: str):
    # given
    AccountFactory(domain=domain)
    workspace = WorkspaceFactory(email=f"dana@{domain}")

    # when
    questions = workspace_link(workspace=workspace)

    # then
    assert workspace.account is None
    assert len(questions) == 1
    assert "free-mail" in questions[0].reason


def test_freemail_list_has_at_least_50_normalised_domains():
    domains = freemail_domains()

    assert len(domains) >= 50
    assert all(d == d.strip().lower() and "." in d and "@" not in d for d in domains)


def test_no_account_match_opens_a_review_item_and_flags_the_workspace():
    # given no account for acme.io

    # when
    workspace = process(trial("dana@acme.io"))

    # then
    [item] = open_items(workspace)
    assert item.dedupe_key == "no_account_match:acme.io"
    assert item.lead == workspace.lead
    assert workspace.needs_review is True
    assert item.reason in workspace.review_reasons


# --- Conversion -------------------------------------------------------------------------------


def test_conversion_onto_an_existing_account_makes_a_contact_there():
    # given
    account = AccountFactory(domain="acme.io")
    process(trial("dana@acme.io"))

    # when
    workspace = process(converted("dana@acme.io"))

    # then
    contact = Contact.objects.get()
    lead = workspace.lead
    assert contact.account == account
    assert (contact.email, contact.first_name) == ("dana@acme.io", "Dana")
    assert lead.converted_at is not None
    assert (lead.converted_account, lead.converted_contact) == (account, contact)
    assert (workspace.account, workspace.contact) == (account, contact)
    assert Account.objects.count() == 1


def test_conversion_without_an_account_creates_one_named_after_the_company():
    # given
    process(trial("dana@acme.io", company="Acme Labs"))

    # when
    workspace = process(converted("dana@acme.io"))

    # then
    account = Account.objects.get()
    assert (account.domain, account.name) == ("acme.io", "Acme Labs")
    assert workspace.account == account
    assert workspace.contact == Contact.objects.get(account=account)
    assert workspace.lead.converted_account == account
    assert open_items(workspace) == []
    assert workspace.needs_review is False


def test_freemail_conversion_creates_a_domainless_account():
    # given
    AccountFactory(domain="gmail.com")  # a bad row that must not be matched
    process(trial("dana@gmail.com", company=""))

    # when
    workspace = process(converted("dana@gmail.com"))

    # then
    account = workspace.account
    assert account.domain is None
    assert account.name == "Dana Reyes", "a person's account bears their name, not their address"
    assert workspace.contact.account == account
    assert Account.objects.count() == 2


def test_freemail_conversion_without_a_name_falls_back_to_the_address():
    process(trial("kim@gmail.com", company="", first_name="", last_name=""))

    workspace = process(converted("kim@gmail.com"))

    assert workspace.account.name == "kim@gmail.com"


def _one_conversion(workspace) -> None:
    assert Contact.objects.count() == 1
    assert Lead.objects.filter(converted_at__isnull=False).count() == 1
    assert Account.objects.count() == 1
    assert workspace.contact == Contact.objects.get()


def test_reprocessing_a_paid_workspace_converts_once():
    # given
    first = process(trial(), converted())
    converted_at = first.lead.converted_at

    # when
    again = process(force=True)

    # then
    _one_conversion(again)
    again.lead.refresh_from_db()
    assert again.lead.converted_at == converted_at


def test_duplicated_conversion_event_converts_once():
    # given
    process(trial(), converted(msg_id="msg_paid_a"))

    # when the provider resends it under a new webhook-id
    workspace = process(converted(msg_id="msg_paid_b"))

    # then
    _one_conversion(workspace)
    assert workspace.converted_at == PAID_AT


def test_conversion_arriving_before_its_trial_converts_once():
    # given
    early = process(converted())
    assert early.needs_review  # no trial data yet

    # when
    workspace = process(trial())

    # then
    _one_conversion(workspace)
    assert workspace.status == "paid"
    assert workspace.trial_started_at == TRIAL_AT
    assert ReviewItem.objects.filter(workspace=workspace, status=ReviewItem.Status.OPEN).count() == 0
    assert workspace.needs_review is False


def test_new_account_is_adopted_by_a_colleagues_trial_on_the_same_domain():
    # given
    colleague = process(trial("lee@acme.io", workspace_id="ws_lee"), workspace_id="ws_lee")
    [item] = open_items(colleague)

    # when
    process(trial("dana@acme.io"), converted("dana@acme.io"))

    # then
    colleague.refresh_from_db()
    item.refresh_from_db()
    assert colleague.account == Account.objects.get(domain="acme.io")
    assert item.status == ReviewItem.Status.RESOLVED
    assert colleague.needs_review is False


# --- The review queue -------------------------------------------------------------------------


def test_admin_resolved_question_is_not_reopened_by_reprocessing(admin_user: AbstractBaseUser):
    # given
    workspace = process(trial("dana@acme.io"))
    [item] = open_items(workspace)
    review_items_resolve(item_ids=[item.pk], user=admin_user, note="A personal project; no account wanted.")

    # when
    workspace = process(force=True)

    # then
    item.refresh_from_db()
    assert item.status == ReviewItem.Status.RESOLVED
    assert ReviewItem.objects.filter(workspace=workspace).count() == 1
    assert workspace.needs_review is False


def test_admin_linked_account_is_kept_by_reprocessing_and_converted_onto(admin_user: AbstractBaseUser):
    # given
    chosen = AccountFactory(domain="globex.com", name="Globex")
    workspace = process(trial("dana@acme.io"))
    [item] = open_items(workspace)
    review_item_link(item_id=item.pk, user=admin_user, account=chosen, note="Acme is Globex's brand.")
    AccountFactory(domain="acme.io")  # a matching account appears later; the admin's choice still wins

    # when
    kept = process(force=True)
    paid = process(converted("dana@acme.io"))

    # then
    assert kept.account == chosen
    assert kept.linked_by_admin is True
    assert paid.account == chosen
    assert paid.contact.account == chosen
    assert paid.lead.converted_account == chosen
    item.refresh_from_db()
    assert (item.status, item.resolution_note) == (ReviewItem.Status.RESOLVED, "Acme is Globex's brand.")


# --- Marketo (CONTRACT §5) --------------------------------------------------------------------


def test_marketo_lead_then_trial_links_the_marketo_lead():
    # given
    marketo_lead("mk_100", "Dana@Acme.io", first_name="Dana")
    lead = Lead.objects.get()

    # when
    workspace = process(trial("dana@acme.io"))

    # then
    assert workspace.lead == lead
    assert Lead.objects.count() == 1
    lead.refresh_from_db()
    assert lead.lead_source == "Marketo"
    assert lead.marketo_lead_id == "mk_100"
    assert (lead.last_name, lead.company) == ("Reyes", "Acme")  # blanks filled by the trial


def test_trial_then_marketo_lead_updates_the_same_lead():
    # given
    workspace = process(trial("dana@acme.io", last_name="", company=""))

    # when
    applied = marketo_lead("mk_200", "DANA@acme.io", first_name="Danielle", last_name="Reyes", company="Acme")

    # then
    assert applied == 1
    lead = Lead.objects.get()
    assert lead == workspace.lead
    assert lead.marketo_lead_id == "mk_200"
    assert lead.lead_source == "Self-Serve Trial"
    assert (lead.first_name, lead.last_name, lead.company) == ("Dana", "Reyes", "Acme")  # only blanks filled


# --- Regressions: admin choices and existing contacts --------------------------------------------


def test_admin_chosen_account_survives_the_owners_conversion_elsewhere(admin_user: AbstractBaseUser):
    # given Dana's gmail workspace ws_team is linked by hand to Globex
    chosen = AccountFactory(domain="globex.com", name="Globex")
    team = process(trial("dana@gmail.com", workspace_id="ws_team"), workspace_id="ws_team")
    [item] = open_items(team)
    review_item_link(item_id=item.pk, user=admin_user, account=chosen)
    # and her personal workspace converts, converting her lead onto a new domain-less account
    process(trial("dana@gmail.com", workspace_id="ws_home"), workspace_id="ws_home")
    process(converted("dana@gmail.com", workspace_id="ws_home"), workspace_id="ws_home")

    # when
    team = process(workspace_id="ws_team", force=True)

    # then
    assert team.account == chosen


def test_admin_linked_lead_on_a_workspace_without_email_is_converted(admin_user: AbstractBaseUser):
    # given a conversion with no email and no trial on record, linked by hand
    account = AccountFactory(domain="acme.io")
    lead = LeadFactory(email="dana@acme.io")
    workspace = process(lifecycle("subscription.converted", plan="team", mrr="297.00"))
    [item] = open_items(workspace)
    review_item_link(item_id=item.pk, user=admin_user, lead=lead, account=account)

    # when
    workspace = process(force=True)

    # then
    lead.refresh_from_db()
    assert lead.converted_account == account
    assert workspace.contact is not None


def test_conversion_with_an_existing_contact_keeps_lead_and_contact_on_one_account():
    # given a contact for dana entered by hand on another account
    ContactFactory(email="dana@acme.io")
    AccountFactory(domain="acme.io")
    process(trial("dana@acme.io"))

    # when
    workspace = process(converted("dana@acme.io"))

    # then
    lead = workspace.lead
    assert lead.converted_contact.account == lead.converted_account == workspace.account
