"""Link repair after a processing run: accounts and workspaces on one domain that missed each other
because they were committed at the same moment by two workers are found after the commit and re-folded."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from django.db import transaction

from events.services import enqueue_workspaces
from linking.freemail import email_domain, is_freemail
from linking.services import workspaces_without_account_on
from workspaces.models import Account, Workspace

logger = logging.getLogger(__name__)


def links_recheck_after_commit(*, applied: Sequence[tuple[Workspace, bool]]) -> None:
    """After the processing run's commit (`applied`: each workspace it applied and whether its lead was
    converted in the run), look again for an account and a workspace on one domain that missed each other.

    A payment creating a domain's account adopts the workspaces on that domain it can see; a new trial on
    the domain, committed by another worker at the same moment, sees no account and is seen by no adoption:
    left unlinked until its next event (found by bench/salesforce_sync.py under faults). Whichever transaction
    commits second sees the other's rows once committed, so each side looks after its own commit: one
    that left company-domain workspaces unlinked looks for their accounts, one that converted a lead
    looks for workspaces still unlinked on its domain. What it finds is re-processed (a forced re-fold).
    """
    unlinked: dict[str, list[str]] = {}
    converted: set[str] = set()
    for workspace, was_converted in applied:
        domain = email_domain(workspace.email)
        if not domain or is_freemail(domain):
            continue
        if workspace.account_id is None:
            unlinked.setdefault(domain, []).append(workspace.workspace_id)
        elif was_converted:
            converted.add(domain)
    if unlinked or converted:
        transaction.on_commit(lambda: relink_missed(unlinked=unlinked, converted=converted), robust=True)


def relink_missed(*, unlinked: dict[str, list[str]], converted: set[str]) -> list[str]:
    """Re-process the workspaces that an account on their domain missed (see links_recheck_after_commit)."""
    keys: set[str] = set()
    if unlinked:
        have_accounts = Account.objects.filter(domain__in=sorted(unlinked)).values_list("domain", flat=True)
        keys.update(key for domain in have_accounts for key in unlinked[domain])
    if converted:
        orphans = workspaces_without_account_on(domains=converted).filter(linked_by_admin=False)
        keys.update(orphans.values_list("workspace_id", flat=True))
    if keys:
        logger.info("re-processing %d workspace(s) an account on their domain missed", len(keys))
        enqueue_workspaces(workspace_keys=sorted(keys), force=True)
    return sorted(keys)
