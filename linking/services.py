"""Linking workspaces to leads, accounts and contacts (CONTRACT §3), lead conversion, and the review queue.

Everything here is idempotent: it compares what is linked with what should be and changes only the
difference, so reprocessing a workspace any number of times converges on the same links.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from linking.freemail import email_domain, is_freemail
from workspaces.models import Account, Contact, Lead, ReviewItem, Workspace
from workspaces.review import review_flag_set, workspace_refresh_review_flag

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


def workspace_link(
    *, workspace: Workspace, unsaved: set[str] | None = None, relinked: set[str] | None = None
) -> list[Question]:
    """Link the workspace to its lead and account, converting the lead once it has paid.

    Returns the linking questions that should be open for it (no account match). With `unsaved`
    the workspace itself is not saved: the links it changed are added to that set for the caller's
    one save (a new workspace is left unsaved altogether). With `relinked`, the ids of other workspaces
    a conversion re-linked are added to it (their Salesforce state changed too).
    """
    admin_lead = workspace.lead if workspace.linked_by_admin else None
    admin_account = workspace.account if workspace.linked_by_admin else None
    if not workspace.email and admin_lead is None:
        return [Question(NO_ACCOUNT_MATCH, f"{NO_ACCOUNT_MATCH}:", "No owner email on record: nothing to link by.")]
    lead = admin_lead or lead_for_workspace(workspace=workspace)
    domain = email_domain(workspace.email or lead.email)
    if admin_account is not None:
        account = admin_account
    elif is_freemail(domain):
        account = None
    elif workspace.account is not None and workspace.account.domain == domain:
        account = workspace.account  # loaded with the workspace in this transaction: no need to look it up
    else:
        account = Account.objects.filter(domain=domain).first()
    contact = workspace.contact
    if workspace.converted_at is not None:
        account, contact = lead_convert(lead=lead, account=account, workspace=workspace, relinked=relinked)
    elif lead.converted_at is not None:
        account, contact = _converted_records(lead, workspace)
    account = admin_account or account  # an admin's choice outlives conversions elsewhere
    _set_links(workspace, lead=lead, account=account, contact=contact, unsaved=unsaved)
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
    if workspace.lead is not None and workspace.lead.email == workspace.email:
        lead, created = workspace.lead, False  # the one already linked (emails are unique): no lookup
    else:
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
        _fill_blanks(lead, first_name=workspace.first_name, last_name=workspace.last_name, company=workspace.company)
    return lead


def lead_convert(
    *, lead: Lead, account: Account | None, workspace: Workspace, relinked: set[str] | None = None
) -> tuple[Account, Contact]:
    """Turn the lead into a contact, on `account` or on a new one; exactly once per lead.

    The lead row is locked, so two workspaces paying at once cannot both convert it. `lead` is updated in
    place, so the caller's copy says it is converted.
    """
    if lead.converted_at is not None:  # read in this transaction, and a conversion is never undone
        return _converted_records(lead, workspace)
    locked = Lead.objects.select_for_update().get(pk=lead.pk)
    if locked.converted_at is not None:  # a colleague's workspace converted it meanwhile
        _copy_conversion(locked, lead)
        return _converted_records(lead, workspace)
    unlocked, lead = lead, locked
    existing = Contact.objects.filter(email=lead.email).select_related("account").first()
    if existing is not None:
        # The person is already a contact (added by hand, say): convert onto their account.
        account, contact = existing.account, existing
    else:
        if account is None:
            account = account_for_new_customer(lead=lead, workspace=workspace, relinked=relinked)
        contact = Contact.objects.create(
            email=lead.email, first_name=lead.first_name, last_name=lead.last_name, account=account
        )
    lead.converted_at = timezone.now()
    lead.converted_account = account
    lead.converted_contact = contact
    lead.save(update_fields=["converted_at", "converted_account", "converted_contact", "updated_at"])
    shared = lead_share_conversion(lead=lead, exclude=workspace)
    if relinked is not None:
        relinked.update(shared)
    _copy_conversion(lead, unlocked)
    return account, contact


def _copy_conversion(source: Lead, target: Lead) -> None:
    target.converted_at = source.converted_at
    target.converted_account = source.converted_account
    target.converted_contact = source.converted_contact


def _converted_records(lead: Lead, workspace: Workspace) -> tuple[Account, Contact]:
    """The converted lead's account and contact, taken from the workspace when it holds them already."""
    account = workspace.account if workspace.account_id == lead.converted_account_id else lead.converted_account
    contact = workspace.contact if workspace.contact_id == lead.converted_contact_id else lead.converted_contact
    return account, contact


def lead_share_conversion(*, lead: Lead, exclude: Workspace | None = None) -> list[str]:
    """Give the lead's other workspaces its contact (and its account where they have none).

    The same person may own several workspaces; once they are a contact, all of them say so,
    whichever workspace was processed first. Returns the ids of the workspaces it changed.
    """
    others = Workspace.objects.filter(lead=lead).exclude(contact=lead.converted_contact)
    if exclude is not None:
        others = others.exclude(pk=exclude.pk)
    for workspace in others:
        workspace.contact = lead.converted_contact
        if workspace.account_id is None:
            workspace.account = lead.converted_account
        workspace.save(update_fields=["contact", "account", "updated_at"])
        questions_reconcile(workspace=workspace, wanted=[], kinds=[NO_ACCOUNT_MATCH])
    return [workspace.workspace_id for workspace in others]


def account_for_new_customer(*, lead: Lead, workspace: Workspace, relinked: set[str] | None = None) -> Account:
    """A new account for a paying customer with none: by company domain, or domain-less for free-mail."""
    domain = email_domain(lead.email)
    person = " ".join(part for part in (lead.first_name, lead.last_name) if part)
    # A free-mail customer with no company is a person: the account bears their name (as a rep would
    # name it), falling back to the address only when the name is unknown too.
    name = workspace.company or lead.company or (domain if not is_freemail(domain) else person or lead.email)
    if is_freemail(domain):
        return Account.objects.create(name=name, domain=None)
    account, created = Account.objects.get_or_create(domain=domain, defaults={"name": name})
    if created:
        adopted = account_adopt_workspaces(account=account, exclude=workspace)
        if relinked is not None:
            relinked.update(adopted)
    return account


def account_adopt_workspaces(*, account: Account, exclude: Workspace | None = None) -> list[str]:
    """Link a new account to the other workspaces on its domain that had none; return their ids.

    Without this, whether a colleague's workspace gets the account would depend on which of the two
    was processed first.
    """
    orphans = workspaces_without_account_on(domains=[account.domain])
    if exclude is not None:
        orphans = orphans.exclude(pk=exclude.pk)
    adopted = []
    for workspace in orphans:
        workspace.account = account
        workspace.save(update_fields=["account", "updated_at"])
        questions_reconcile(workspace=workspace, wanted=[], kinds=[NO_ACCOUNT_MATCH])
        adopted.append(workspace.workspace_id)
    return adopted


def workspaces_without_account_on(*, domains: Iterable[str]) -> QuerySet[Workspace]:
    """Workspaces whose owner's email is on one of these domains and that have no account."""
    on_domains = Q()
    for domain in sorted(domains):
        on_domains |= Q(email__endswith=f"@{domain}")
    return Workspace.objects.filter(on_domains, account__isnull=True)


def _fill_blanks(record: Lead | Contact, **values: str) -> None:
    blanks = {name: value for name, value in values.items() if value and not getattr(record, name)}
    if blanks:
        for name, value in blanks.items():
            setattr(record, name, value)
        record.save(update_fields=[*blanks, "updated_at"])


def _set_links(
    workspace: Workspace,
    *,
    lead: Lead,
    account: Account | None,
    contact: Contact | None,
    unsaved: set[str] | None = None,
) -> None:
    """Link the records (objects, not ids: the outbox reads them from the workspace next)."""
    wanted = {"lead": lead, "account": account, "contact": contact}
    changed = [name for name, one in wanted.items() if getattr(workspace, f"{name}_id") != getattr(one, "pk", None)]
    for name, record in wanted.items():
        setattr(workspace, name, record)
    if unsaved is not None:
        unsaved.update(changed)
    elif workspace._state.adding:
        workspace.save()  # a new workspace: created with its links
    elif changed:
        workspace.save(update_fields=[*changed, "updated_at"])


# --- The review queue -------------------------------------------------------------------------


def questions_reconcile(
    *,
    workspace: Workspace,
    wanted: Iterable[Question],
    kinds: Sequence[str] = MANAGED_KINDS,
    unsaved: set[str] | None = None,
    new_workspace: bool = False,
) -> None:
    """Open the wanted questions of these kinds, withdraw the open ones no longer true, and refresh
    the workspace's review flag.

    A question an admin resolved is never asked again; one the engine withdrew by itself is reopened
    if the facts bring it back (a late event can), so the queue depends on the events, not their order.
    """
    wanted_by_key = _by_key(wanted, kinds)
    # All kinds: the review flag needs them all. A workspace inserted just now has none yet.
    items = [] if new_workspace else list(ReviewItem.objects.filter(workspace=workspace))
    existing = {item.dedupe_key: item for item in items if item.kind in kinds}
    for key, question in wanted_by_key.items():
        item = existing.get(key)
        if item is None:
            item = ReviewItem.objects.create(
                workspace=workspace, kind=question.kind, dedupe_key=key, reason=question.reason, lead=workspace.lead
            )
            if question.event_pks:  # a new item has no evidence yet: nothing to compare with
                item.events.add(*question.event_pks)
            items.append(item)
        elif item.status == ReviewItem.Status.OPEN or item.resolved_by_id is None:
            _ask_again(item, question)
    stale = [
        item for key, item in existing.items() if item.status == ReviewItem.Status.OPEN and key not in wanted_by_key
    ]
    for item in stale:
        _close(item, note="Resolved automatically: the engine's data no longer shows this problem.", user=None)
    workspace_refresh_review_flag(workspace=workspace, items=items, unsaved=unsaved)


def workspace_flag_new_questions(*, workspace: Workspace, wanted: Iterable[Question]) -> None:
    """A new workspace's review flag, set before its INSERT: it has no review items yet, so the open
    ones will be exactly the wanted questions, in the order questions_reconcile creates them."""
    review_flag_set(workspace, [question.reason for question in _by_key(wanted, MANAGED_KINDS).values()], set())


def _by_key(wanted: Iterable[Question], kinds: Sequence[str]) -> dict[str, Question]:
    """The wanted questions of these kinds by key, in the order questions_reconcile creates them."""
    return {question.key: question for question in wanted if question.kind in kinds}


def review_items_resolve(*, item_ids: Sequence[int], user: AbstractBaseUser, note: str) -> int:
    """Close open review items with a note saying what was decided; return how many were closed."""
    with transaction.atomic():
        items = list(ReviewItem.objects.select_for_update().filter(pk__in=item_ids, status=ReviewItem.Status.OPEN))
        for item in items:
            _close(item, note=note, user=user)
        for workspace in {item.workspace for item in items if item.workspace is not None}:
            workspace_refresh_review_flag(workspace=workspace)
    return len(items)


def _ask_again(item: ReviewItem, question: Question) -> None:
    """Keep an engine-owned question current: reopened if withdrawn, reason and evidence refreshed."""
    fields = []
    if item.status != ReviewItem.Status.OPEN:
        item.status, item.resolved_at, item.resolution_note = ReviewItem.Status.OPEN, None, ""
        fields += ["status", "resolved_at", "resolution_note"]
    if item.reason != question.reason:
        item.reason = question.reason
        fields.append("reason")
    if fields:
        item.save(update_fields=[*fields, "updated_at"])
    if set(item.events.values_list("pk", flat=True)) != set(question.event_pks):
        item.events.set(question.event_pks)


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


def review_item_link(
    *, item_id: int, user: AbstractBaseUser, lead: Lead | None = None, account: Account | None = None, note: str = ""
) -> Workspace:
    """An admin's answer to "which lead/account is this?": link it, keep it, and close the question.

    The workspace is marked `linked_by_admin`, so later processing keeps the admin's choice (a
    conversion then happens on the chosen account).
    """
    if lead is None and account is None:
        raise ValueError("Choose a lead, an account, or both.")
    with transaction.atomic():
        item = ReviewItem.objects.select_for_update(of=("self",)).select_related("workspace").get(pk=item_id)
        workspace = item.workspace
        if workspace is None:
            raise ValueError("This review item is not about a workspace; there is nothing to link.")
        if lead is not None:
            workspace.lead = lead
        if account is not None:
            workspace.account = account
        workspace.linked_by_admin = True
        workspace.save(update_fields=["lead", "account", "linked_by_admin", "updated_at"])
        chosen = ", ".join(f"{label} {value}" for label, value in (("lead", lead), ("account", account)) if value)
        if item.status == ReviewItem.Status.OPEN:
            _close(item, note=note or f"Linked by hand to {chosen}.", user=user)
        if account is not None:
            questions_reconcile(workspace=workspace, wanted=[], kinds=[NO_ACCOUNT_MATCH])
        workspace_refresh_review_flag(workspace=workspace)
    return workspace
