"""factory-boy factories for the engine's models."""

from __future__ import annotations

import factory
from django.utils import timezone

from events.models import Event
from workspaces.models import Account, Contact, Lead, Workspace


class AccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Account

    name = factory.Sequence(lambda n: f"Company {n}")
    domain = factory.Sequence(lambda n: f"company{n}.example")


class LeadFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Lead

    email = factory.Sequence(lambda n: f"person{n}@company{n}.example")
    first_name = "Dana"
    last_name = "Reyes"


class ContactFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Contact

    email = factory.Sequence(lambda n: f"contact{n}@company.example")
    account = factory.SubFactory(AccountFactory)


class WorkspaceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Workspace

    workspace_id = factory.Sequence(lambda n: f"ws_{n:05d}")
    status = Workspace.Status.TRIAL
    email = factory.Sequence(lambda n: f"owner{n}@company.example")
    trial_started_at = factory.LazyFunction(timezone.now)


class EventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Event

    source = Event.Source.PROVISIONING
    external_id = factory.Sequence(lambda n: f"msg_{n:06d}")
    type = "trial.started"
    occurred_at = factory.LazyFunction(timezone.now)
    workspace_key = "ws_00001"
    payload = factory.LazyAttribute(
        lambda e: {
            "type": e.type,
            "timestamp": e.occurred_at.isoformat(),
            "data": {"workspace_id": e.workspace_key, "email": "a@acme.io"},
        }
    )
