"""Linking workspaces to leads, accounts and contacts (CONTRACT §3), lead conversion, and the review queue.

Everything here is idempotent: it compares what is linked with what should be and changes only the
difference, so reprocessing a workspace any number of times converges on the same links.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from linking.freemail import email_domain, is_freemail
from linking.models import ReviewItem
from workspaces.models import Account, Contact, Lead, Workspace

NO_ACCOUNT_MATCH = ReviewItem.Kind.NO_ACCOUNT_MATCH
#: Kinds of question this module asks and withdraws by itself as the facts change.
MANAGED_KINDS = (ReviewItem.Kind.NO_TRIAL_DATA, ReviewItem.Kind.CONFLICTING_DATA, NO_ACCOUNT_MATCH)


@dataclass(frozen=True)
class Question:
    """A review item the engine wants open: `key` identifies it, `event_pks` are its evidence."""

    kind: str
    key: str
    reason: str
    event_pks: tuple[int, ...] = ()


# --- Linking ----------------------------------------------------------------------------------


def workspace_link(*, workspace: Workspace) -> list[Question]:
    """Link the workspace to its lead and account, converting the lead once it has paid.

    Returns the linking questions that should be open for it (no account match).
    """
    if not workspace.email:
        return [
            Question(
                NO_ACCOUNT_MATCH, f"{NO_ACCOUNT_MATCH}:", "No owner email on record: nothing to link by."
            )
        ]
    lead = (
        workspace.lead
        if workspace.linked_by_admin and workspace.lead
        else lead_for_workspace(workspace=workspace)
    )
    domain = email_domain(workspace.email)
    if workspace.linked_by_admin and workspace.account is not None:
        account = workspace.account
    else:
        account = None if is_freemail(domain) else Account.objects.filter(domain=domain).first()
    contact = workspace.contact
    if workspace.converted_at is not None:
        account, contact = lead_convert(lead=lead, account=account, workspace=workspace)
    elif lead.converted_at is not None:
        account, contact = lead.converted_account, lead.converted_contact
    _set_links(workspace, lead=lead, account=account, contact=contact)
    if account is not None:
        return []
    why = (
        f"{workspace.email} is on the free-mail domain {domain}: no account can match."
        if is_freemail(domain)
        else f"No account has the domain {domain}."
    )
    return [
        Question(
            NO_ACCOUNT_MATCH,
            f"{NO_ACCOUNT_MATCH}:{domain}",
            why + " Link one by hand, or it is created on payment.",
        )
    ]


def lead_for_workspace(*, workspace: Workspace) -> Lead:
    """The lead with the owner's email (created as a Self-Serve Trial lead if none), blanks filled in."""
    lead, created = Lead.objects.get_or_create(
        email=workspace.email,
        defaults={
            "first_name": workspace.first_name,
            "last_name": workspace.last_name,
            "company": workspace.company,
            "lead_source": Lead.Source.SELF_SERVE_TRIAL,
        },
    )
    if not created:
        _fill_blanks(
            lead, first_name=workspace.first_name, last_name=workspace.last_name, company=workspace.company
        )
    return lead


def lead_convert(*, lead: Lead, account: Account | None, workspace: Workspace) -> tuple[Account, Contact]:
    """Turn the lead into a contact, on `account` or on a new one; exactly once per lead.

    The lead row is locked, so two workspaces paying at once cannot both convert it.
    """
    lead = Lead.objects.select_for_update().get(pk=lead.pk)
    if lead.converted_at is not None:
        return lead.converted_account, lead.converted_contact
    if account is None:
        account = account_for_new_customer(lead=lead, workspace=workspace)
    contact, _ = Contact.objects.get_or_create(
        email=lead.email,
        defaults={"first_name": lead.first_name, "last_name": lead.last_name, "account": account},
    )
    lead.converted_at = timezone.now()
    lead.converted_account = account
    lead.converted_contact = contact
    lead.save(update_fields=["converted_at", "converted_account", "converted_contact", "updated_at"])
    return account, contact


def account_for_new_customer(*, lead: Lead, workspace: Workspace) -> Account:
    """A new account for a paying customer with none: by company domain, or domain-less for free-mail."""
    domain = email_domain(lead.email)
    name = workspace.company or lead.company or (domain if not is_freemail(domain) else lead.email)
    if is_freemail(domain):
        return Account.objects.create(name=name, domain=None)
    account, created = Account.objects.get_or_create(domain=domain, defaults={"name": name})
    if created:
        account_adopt_workspaces(account=account, exclude=workspace)
    return account


def account_adopt_workspaces(*, account: Account, exclude: Workspace | None = None) -> int:
    """Link a new account to the other workspaces on its domain that had none; return how many.

    Without this, whether a colleague's workspace gets the account would depend on which of the two
    was processed first.
    """
    orphans = Workspace.objects.filter(account__isnull=True, email__endswith=f"@{account.domain}")
    if exclude is not None:
        orphans = orphans.exclude(pk=exclude.pk)
    adopted = 0
    for workspace in orphans:
        workspace.account = account
        workspace.save(update_fields=["account", "updated_at"])
        questions_reconcile(workspace=workspace, wanted=[], kinds=[NO_ACCOUNT_MATCH])
        adopted += 1
    return adopted


def _fill_blanks(record: Lead | Contact, **values: str) -> None:
    blanks = {name: value for name, value in values.items() if value and not getattr(record, name)}
    if blanks:
        for name, value in blanks.items():
            setattr(record, name, value)
        record.save(update_fields=[*blanks, "updated_at"])


def _set_links(workspace: Workspace, *, lead: Lead, account: Account | None, contact: Contact | None) -> None:
    wanted = {
        "lead_id": lead.pk,
        "account_id": account.pk if account else None,
        "contact_id": contact.pk if contact else None,
    }
    changed = [name for name, value in wanted.items() if getattr(workspace, name) != value]
    if changed:
        for name in changed:
            setattr(workspace, name, wanted[name])
        workspace.save(update_fields=[name.removesuffix("_id") for name in changed] + ["updated_at"])


# --- The review queue -------------------------------------------------------------------------


def questions_reconcile(
    *, workspace: Workspace, wanted: Iterable[Question], kinds: Sequence[str] = MANAGED_KINDS
) -> None:
    """Open the wanted questions of these kinds, withdraw the open ones no longer true, and refresh
    the workspace's review flag. A question an admin resolved is never asked again."""
    wanted_by_key = {question.key: question for question in wanted if question.kind in kinds}
    existing = {
        item.dedupe_key: item for item in ReviewItem.objects.filter(workspace=workspace, kind__in=kinds)
    }
    for key, question in wanted_by_key.items():
        if key not in existing:
            item = ReviewItem.objects.create(
                workspace=workspace,
                kind=question.kind,
                dedupe_key=key,
                reason=question.reason,
                lead=workspace.lead,
            )
            if question.event_pks:
                item.events.set(question.event_pks)
    stale = [
        item
        for key, item in existing.items()
        if item.status == ReviewItem.Status.OPEN and key not in wanted_by_key
    ]
    for item in stale:
        _close(
            item, note="Resolved automatically: the engine's data no longer shows this problem.", user=None
        )
    workspace_refresh_review_flag(workspace=workspace)


def workspace_refresh_review_flag(*, workspace: Workspace) -> None:
    """needs_review and review_reasons mirror the workspace's open review items."""
    reasons = list(
        ReviewItem.objects.filter(workspace=workspace, status=ReviewItem.Status.OPEN)
        .order_by("created_at", "pk")
        .values_list("reason", flat=True)
    )
    if workspace.needs_review != bool(reasons) or workspace.review_reasons != reasons:
        workspace.needs_review = bool(reasons)
        workspace.review_reasons = reasons
        workspace.save(update_fields=["needs_review", "review_reasons", "updated_at"])


def review_items_resolve(*, item_ids: Sequence[int], user: AbstractBaseUser, note: str) -> int:
    """Close open review items with a note saying what was decided; return how many were closed."""
    with transaction.atomic():
        items = list(
            ReviewItem.objects.select_for_update().filter(pk__in=item_ids, status=ReviewItem.Status.OPEN)
        )
        for item in items:
            _close(item, note=note, user=user)
        for workspace in {item.workspace for item in items if item.workspace is not None}:
            workspace_refresh_review_flag(workspace=workspace)
    return len(items)


def _close(item: ReviewItem, *, note: str, user: AbstractBaseUser | None) -> None:
    item.status = ReviewItem.Status.RESOLVED
    item.resolution_note = note
    item.resolved_by = user
    item.resolved_at = timezone.now()
    item.save(update_fields=["status", "resolution_note", "resolved_by", "resolved_at", "updated_at"])


# --- Marketo ----------------------------------------------------------------------------------


def marketo_lead_upsert(
    *, lead_id: str, email: str, first_name: str = "", last_name: str = "", company: str = ""
) -> Lead:
    """The lead for this email, carrying the Marketo id, names filled where blank (CONTRACT §5).

    Leads are keyed by normalised email, so a workspace with this email links to the same lead
    whenever it arrives: before Marketo's webhook or after it.
    """
    lead, created = Lead.objects.get_or_create(
        email=email.strip().lower(),
        defaults={
            "first_name": first_name,
            "last_name": last_name,
            "company": company,
            "lead_source": Lead.Source.MARKETO,
            "marketo_lead_id": lead_id,
        },
    )
    if not created:
        if not lead.marketo_lead_id and not Lead.objects.filter(marketo_lead_id=lead_id).exists():
            lead.marketo_lead_id = lead_id
            lead.save(update_fields=["marketo_lead_id", "updated_at"])
        _fill_blanks(lead, first_name=first_name, last_name=last_name, company=company)
    return lead
