"""Auditlog registration for the customer record (every change, with its actor)."""

from auditlog.registry import auditlog

from workspaces.models import Account, Contact, Lead, Workspace

auditlog.register(Workspace)
auditlog.register(Lead)
auditlog.register(Account)
auditlog.register(Contact)
