"""The three roles as groups with exactly the permissions of privacy/roles.py (Lifecycle admins, Reps,
Auditors). alerts 0004 made the first two additively; from here on the table in privacy/roles.py is
the truth, and post_migrate keeps it so as models are added."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

from privacy.roles import groups_sync


def sync_groups(apps, schema_editor):
    # Permissions are normally made after all migrations (post_migrate); make them now to grant them.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    groups_sync(group_model=apps.get_model("auth", "Group"), permission_model=apps.get_model("auth", "Permission"))


class Migration(migrations.Migration):
    dependencies = [
        ("privacy", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("alerts", "0004_role_groups"),
        ("events", "0003_event_privacy"),
        ("linking", "0001_initial"),
        ("sync", "0003_reconcile_billing_schedule"),
        ("workspaces", "0003_workspace_billing"),
        ("triggers", "0001_initial"),
        ("ops", "0002_schedules"),
        ("auditlog", "0017_add_actor_email"),
        ("axes", "0001_initial"),
        ("otp_totp", "0001_initial"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(sync_groups, migrations.RunPython.noop)]
