"""Everything the engine holds about one person, found by their email (read-only selectors).

The one finder of both data requests: export shows exactly these rows and erasure scrubs exactly these
rows, so an export lists everything an erasure would change. A row is *about* the person when it is
their lead, contact or workspace or hangs off those (review items, alerts, audit entries of those
objects); it *mentions* them when their address appears in its text or JSON (another workspace's name,
say). Trigger firings of their workspaces and the messages those planned (a rendered email names them)
count as about them. Text searches scan whole tables: fine for a rare, admin-run request, and the only way to find an
address inside free text.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import reduce
from operator import or_

from auditlog.models import LogEntry
from django.contrib.admin.models import LogEntry as AdminLogEntry
from django.contrib.contenttypes.models import ContentType
from django.db.models import Model, Q, QuerySet

from alerts.models import Alert, Delivery
from events.models import Event
from messaging.models import Dispatch, Unsubscribe
from salesforce.models import OutboxItem
from salesforce.outbox import contact_key, lead_key
from triggers.models import Firing
from usage.models import UsageDailyUser
from workspaces.lifecycle import LIFECYCLE_TYPES
from workspaces.models import Account, Contact, Lead, ReviewItem, Workspace


def mentioning(fields: tuple[str, ...], email: str) -> Q:
    """Rows whose text or JSON fields contain the address (case-insensitive)."""
    return reduce(or_, (Q(**{f"{name}__icontains": email}) for name in fields))


#: Per model, the fields that can hold an address or a name in free text or JSON.
TEXT_FIELDS: dict[type[Model], tuple[str, ...]] = {
    Event: ("payload", "notes"),
    ReviewItem: ("reason", "resolution_note"),
    Alert: ("title", "reason", "routing", "context"),
    Delivery: ("last_error",),
    OutboxItem: ("payload", "error_message"),
    Account: ("name",),
    Workspace: ("name", "review_reasons"),
    LogEntry: ("object_repr", "changes_text", "changes", "serialized_data", "additional_data"),
    AdminLogEntry: ("object_repr", "change_message"),
    Firing: ("recipient", "explanation"),
    Dispatch: ("recipient", "subject", "text", "html", "data", "last_error"),
    Unsubscribe: ("address",),
}


@dataclass
class Holdings:
    """Every row about or mentioning the person, one queryset per section of the export."""

    email: str
    leads: QuerySet[Lead]
    contacts: QuerySet[Contact]
    workspaces: QuerySet[Workspace]
    accounts: QuerySet[Account]
    events: QuerySet[Event]
    review_items: QuerySet[ReviewItem]
    alerts: QuerySet[Alert]
    deliveries: QuerySet[Delivery]
    usage: QuerySet[UsageDailyUser]
    outbox: QuerySet[OutboxItem]
    audit_log: QuerySet[LogEntry]
    admin_log: QuerySet[AdminLogEntry]
    firings: QuerySet[Firing]
    dispatches: QuerySet[Dispatch]
    unsubscribes: QuerySet[Unsubscribe]
    #: Primary keys of the rows *about* the person, per model of TEXT_FIELDS (erasure removes their names there).
    about: dict[type[Model], set[int]]

    def with_text(self) -> dict[type[Model], QuerySet]:
        """The sections whose rows can name the person in free text or JSON (what erasure scrubs), by model."""
        return {
            Event: self.events,
            ReviewItem: self.review_items,
            Alert: self.alerts,
            Delivery: self.deliveries,
            OutboxItem: self.outbox,
            Account: self.accounts,
            Workspace: self.workspaces,
            LogEntry: self.audit_log,
            AdminLogEntry: self.admin_log,
            Firing: self.firings,
            Dispatch: self.dispatches,
            Unsubscribe: self.unsubscribes,
        }


def firing_dispatches(firings: QuerySet[Firing]) -> Q:
    """The messages these firings planned (messaging keeps no foreign key up to triggers)."""
    return Q(source="firing", source_id__in=firings.values("pk"))


def object_entries(log: type[Model], objects: dict[type[Model], Iterable[int]]) -> Q:
    """Audit (auditlog) or admin-history entries of these objects, given as {model: primary keys}."""
    # auditlog keeps the pk as text in object_pk; the admin's own LogEntry keeps it as text in object_id.
    column = "object_pk" if log is LogEntry else "object_id"
    query = Q(pk__in=[])
    for model, pks in objects.items():
        content_type = ContentType.objects.get_for_model(model)
        query |= Q(content_type=content_type, **{f"{column}__in": [str(pk) for pk in pks]})
    return query


@dataclass
class Subject:
    """The person's own rows by primary key, fixed before anything is changed (erasure renames them)."""

    email: str
    lead_pks: list[int]
    contact_pks: list[int]
    workspace_pks: list[int]
    workspace_keys: list[str]

    @classmethod
    def find(cls, email: str) -> Subject:
        lead_pks = list(Lead.objects.filter(email=email).values_list("pk", flat=True))
        contact_pks = list(
            Contact.objects.filter(Q(email=email) | Q(converted_from__in=lead_pks)).values_list("pk", flat=True)
        )
        workspaces = Workspace.objects.filter(Q(email=email) | Q(lead__in=lead_pks) | Q(contact__in=contact_pks))
        rows = list(workspaces.values_list("pk", "workspace_id"))
        return cls(email, lead_pks, contact_pks, [pk for pk, _ in rows], [key for _, key in rows])

    @property
    def lead_keys(self) -> list[str]:
        return [lead_key(lead) for lead in Lead.objects.filter(pk__in=self.lead_pks)]

    @property
    def contact_keys(self) -> list[str]:
        return [contact_key(contact) for contact in Contact.objects.filter(pk__in=self.contact_pks)]

    def outbox_rows(self) -> Q:
        return (
            Q(object_type__in=("Lead", "LeadConversion"), external_id__in=self.lead_keys)
            | Q(object_type="Contact", external_id__in=self.contact_keys)
            | Q(object_type="Workspace__c", external_id__in=self.workspace_keys)
        )


def about_person(subject: Subject) -> dict[type[Model], set[int]]:
    """Rows that are about the person, by model: their names count there too, not only the address.

    Audit and admin-history entries are about the person when their object is. Evaluated at once, so
    an erasure that scrubs the events first still finds the audit entries of those events.
    """
    queries: dict[type[Model], Q] = {
        Event: mentioning(("payload",), subject.email),
        ReviewItem: Q(workspace__in=subject.workspace_pks) | Q(lead__in=subject.lead_pks),
        Alert: Q(workspace__in=subject.workspace_pks) | Q(workspace_key__in=subject.workspace_keys),
        Delivery: Q(alert__workspace__in=subject.workspace_pks) | Q(alert__workspace_key__in=subject.workspace_keys),
        OutboxItem: subject.outbox_rows(),
        Account: Q(pk__in=[]),
        Workspace: Q(pk__in=subject.workspace_pks),
        Firing: Q(workspace_key__in=subject.workspace_keys),
        Dispatch: firing_dispatches(Firing.objects.filter(workspace_key__in=subject.workspace_keys)),
        Unsubscribe: Q(address=subject.email),
    }
    about = {model: set(model.objects.filter(query).values_list("pk", flat=True)) for model, query in queries.items()}
    objects = {Lead: subject.lead_pks, Contact: subject.contact_pks, **about}
    for log in (LogEntry, AdminLogEntry):
        about[log] = set(log.objects.filter(object_entries(log, objects)).values_list("pk", flat=True))
    return about


def person_holdings(*, email: str, subject: Subject | None = None) -> Holdings:
    """Every row about or mentioning the (normalised) address; `subject` as found before an erasure began."""
    subject = subject or Subject.find(email)
    about = about_person(subject)
    own_workspaces = Workspace.objects.filter(pk__in=subject.workspace_pks)
    account_pks = {pk for pk in own_workspaces.values_list("account", flat=True) if pk}
    account_pks |= set(Contact.objects.filter(pk__in=subject.contact_pks).values_list("account", flat=True))
    # Their workspaces' lifecycle events; usage events only where they are the user (not colleagues').
    events = Q(workspace_key__in=subject.workspace_keys, type__in=LIFECYCLE_TYPES)
    alerts = Alert.objects.filter(
        Q(workspace__in=subject.workspace_pks)
        | Q(workspace_key__in=subject.workspace_keys)
        | mentioning(TEXT_FIELDS[Alert], email)
    )
    # Trigger firings of their workspaces (to them or about them, to a rep) and any naming them; their messages.
    firings = Firing.objects.filter(
        Q(workspace_key__in=subject.workspace_keys) | mentioning(TEXT_FIELDS[Firing], email)
    )
    return Holdings(
        email=email,
        leads=Lead.objects.filter(pk__in=subject.lead_pks),
        contacts=Contact.objects.filter(pk__in=subject.contact_pks),
        # Theirs, and others whose name or review reasons mention them (erasure scrubs those too).
        workspaces=Workspace.objects.filter(
            Q(pk__in=subject.workspace_pks) | mentioning(TEXT_FIELDS[Workspace], email)
        ),
        accounts=Account.objects.filter(Q(pk__in=account_pks) | mentioning(TEXT_FIELDS[Account], email)),
        events=Event.objects.filter(events | mentioning(TEXT_FIELDS[Event], email)),
        review_items=ReviewItem.objects.filter(
            Q(workspace__in=subject.workspace_pks)
            | Q(lead__in=subject.lead_pks)
            | mentioning(TEXT_FIELDS[ReviewItem], email)
        ),
        alerts=alerts,
        deliveries=Delivery.objects.filter(Q(alert__in=alerts) | mentioning(TEXT_FIELDS[Delivery], email)),
        usage=UsageDailyUser.objects.filter(user_email=email),
        outbox=OutboxItem.objects.filter(subject.outbox_rows() | mentioning(TEXT_FIELDS[OutboxItem], email)),
        audit_log=LogEntry.objects.filter(Q(pk__in=about[LogEntry]) | mentioning(TEXT_FIELDS[LogEntry], email)),
        admin_log=AdminLogEntry.objects.filter(
            Q(pk__in=about[AdminLogEntry]) | mentioning(TEXT_FIELDS[AdminLogEntry], email)
        ),
        firings=firings,
        dispatches=Dispatch.objects.filter(firing_dispatches(firings) | mentioning(TEXT_FIELDS[Dispatch], email)),
        unsubscribes=Unsubscribe.objects.filter(mentioning(TEXT_FIELDS[Unsubscribe], email)),
        about=about,
    )
