"""The two roles of DESIGN.md as groups, with least privilege.

"Lifecycle admins" get exactly what running the engine from the admin needs: read the records, act on
events, review items, the outbox and alerts, configure alert rules, reps and territories, read the
audit trail. They still need is_staff to reach the admin. "Reps" get no model permission at all: they
never use the admin, and the rep pages decide by group membership what each rep may see.
Existing groups are kept and only given the missing permissions; nothing is removed.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

ADMINS_GROUP = "Lifecycle admins"
REPS_GROUP = "Reps"

ADMIN_PERMISSIONS = {
    "events": ["view_event", "change_event", "view_workspacelock"],
    "linking": ["view_reviewitem", "change_reviewitem"],
    "sync": ["view_outboxitem", "change_outboxitem", "view_synccontrol", "change_synccontrol"],
    "workspaces": ["view_workspace", "change_workspace", "view_lead", "view_account", "change_account", "view_contact"],
    "alerts": [
        "view_alert",
        "change_alert",
        "view_alertrule",
        "change_alertrule",
        "add_alertrule",
        "view_delivery",
        "change_delivery",
        "view_rep",
        "add_rep",
        "change_rep",
        "delete_rep",
        "view_territoryrule",
        "add_territoryrule",
        "change_territoryrule",
        "delete_territoryrule",
        "view_routingcursor",
    ],
    "triggers": ["view_usagedaily"],
    "auditlog": ["view_logentry"],
}


def create_groups(apps, schema_editor):
    # Permissions are normally made after all migrations (post_migrate); make them now to grant them.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    admins, _ = Group.objects.get_or_create(name=ADMINS_GROUP)
    Group.objects.get_or_create(name=REPS_GROUP)
    for app_label, codenames in ADMIN_PERMISSIONS.items():
        found = Permission.objects.filter(content_type__app_label=app_label, codename__in=codenames)
        admins.permissions.add(*found)


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("alerts", "0003_rule_defaults_and_schedules"),
        ("events", "0002_sweeper_schedule"),
        ("linking", "0001_initial"),
        ("sync", "0003_reconcile_billing_schedule"),
        ("workspaces", "0003_workspace_billing"),
        ("triggers", "0001_initial"),
        ("auditlog", "0017_add_actor_email"),
    ]

    operations = [migrations.RunPython(create_groups, migrations.RunPython.noop)]
