"""Roles with least privilege (DESIGN "Roles"): the three groups and exactly the permissions each has.

This table is the truth: the data migration (privacy 0002, after alerts 0004 first made two of the
groups) and every `migrate` (post_migrate) set each group's permissions to exactly what is listed
here, removing anything granted by hand. Change it here.

- Lifecycle admins (staff): run the engine from the admin — read everything, retry and resolve, link
  records, manage alert routing, carry out data requests. Nobody deletes events or audit entries.
- Reps: no admin permissions at all. They use the rep pages (/reps/), which show their own alerts and
  workspaces and never a raw payload.
- Auditors (staff): read-only on events, the customer record, linking, sync, alerts, usage, audit
  log and data requests; they change nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

ADMINS = "Lifecycle admins"
REPS = "Reps"
AUDITORS = "Auditors"

#: "app_label.model" (or "app_label.*" for every model of the app) → actions.
ROLE_PERMISSIONS: dict[str, dict[str, tuple[str, ...]]] = {
    ADMINS: {
        "events.event": ("view", "change"),
        "workspaces.workspacelock": ("view",),
        "workspaces.workspace": ("view", "change"),
        "workspaces.lead": ("view",),
        "workspaces.account": ("view", "change"),
        "workspaces.contact": ("view",),
        "workspaces.reviewitem": ("view", "change"),
        "sync.outboxitem": ("view", "change"),
        "sync.synccontrol": ("view", "change"),
        "alerts.alert": ("view", "change"),
        "alerts.delivery": ("view", "change"),
        "alerts.alertrule": ("view", "add", "change"),
        "alerts.rep": ("view", "add", "change", "delete"),
        "alerts.territoryrule": ("view", "add", "change", "delete"),
        "alerts.routingcursor": ("view",),
        "usage.usagedaily": ("view",),
        "ops.*": ("view",),  # the dashboard
        "failures.heartbeat": ("view",),
        "failures.errorkind": ("view", "change"),  # mark error kinds resolved
        "triggers.trigger": ("view", "add", "change"),
        "triggers.experiment": ("view", "add", "change"),  # start and stop too; never deleted
        "triggers.firing": ("view",),
        "triggers.timer": ("view",),
        "messaging.dispatch": ("view", "change"),  # retry a dead or skipped dispatch
        "messaging.unsubscribe": ("view", "delete"),  # deleting one subscribes the address to marketing again
        "events.sourceday": ("view",),
        "events.rollupcursor": ("view",),
        "auditlog.logentry": ("view",),
        "privacy.datarequest": ("view", "add", "change"),
        "privacy.tombstone": ("view",),
        "django_q.schedule": ("view",),
        "django_q.success": ("view",),
        "django_q.failure": ("view",),
        "axes.accessattempt": ("view", "delete"),  # deleting an attempt unlocks a locked-out login
        "axes.accessfailurelog": ("view",),
        "otp_totp.totpdevice": ("view", "delete"),  # remove a lost device; adding one is the owner's job
    },
    REPS: {},
    AUDITORS: {
        "events.*": ("view",),
        "workspaces.*": ("view",),
        "linking.*": ("view",),
        "sync.*": ("view",),
        "alerts.*": ("view",),
        "triggers.*": ("view",),
        "usage.usagedaily": ("view",),
        "usage.usagedailyuser": ("view",),
        "failures.*": ("view",),
        "messaging.*": ("view",),
        "ops.*": ("view",),
        "auditlog.logentry": ("view",),
        "privacy.datarequest": ("view",),
        "privacy.tombstone": ("view",),
    },
}


def wanted_codenames(spec: dict[str, tuple[str, ...]], models: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """(app_label, codename) of every permission the spec grants, given the installed (app_label, model)."""
    installed = set(models)
    wanted = set()
    for target, actions in spec.items():
        app_label, _, model = target.partition(".")
        matches = [m for a, m in installed if a == app_label and (model == "*" or m == model)]
        wanted |= {(app_label, f"{action}_{m}") for m in matches for action in actions}
    return wanted


def groups_sync(*, group_model, permission_model, create: bool = True) -> dict[str, int]:
    """Set each group's permissions to exactly the table (creating missing groups unless `create` is
    off); return counts by group. Takes the models so a migration can pass its historical ones.
    """
    permissions = {
        (app_label, codename): pk
        for pk, app_label, codename in permission_model.objects.values_list("pk", "content_type__app_label", "codename")
    }
    models = set(permission_model.objects.values_list("content_type__app_label", "content_type__model"))
    counts = {}
    for name, spec in ROLE_PERMISSIONS.items():
        group = group_model.objects.filter(name=name).first()
        if group is None:
            if not create:
                continue
            group = group_model.objects.create(name=name)
        pks = [permissions[key] for key in wanted_codenames(spec, models) if key in permissions]
        group.permissions.set(pks)
        counts[name] = len(pks)
    return counts


def groups_sync_after_migrate(sender, using: str = "default", **kwargs) -> None:
    """post_migrate: models added since the data migration get their permissions too.

    Existing groups only: a test database flush also sends post_migrate, and groups re-made there
    would collide with the ones a serialized-rollback test restores.
    """
    from django.apps import apps
    from django.contrib.auth.management import create_permissions
    from django.contrib.auth.models import Group, Permission

    for app_config in apps.get_app_configs():
        create_permissions(app_config, verbosity=0, using=using)
    groups_sync(group_model=Group, permission_model=Permission, create=False)
