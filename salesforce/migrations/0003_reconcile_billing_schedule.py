"""Reconcile billing with Stripe once a day; no catch-up (Q_CLUSTER["catch_up"] is off globally)."""

from django.db import migrations

NAME = "Stripe billing reconciliation"


def install(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.update_or_create(
        name=NAME, defaults={"func": "sync.tasks.reconcile_billing", "schedule_type": "D", "repeats": -1}
    )


def uninstall(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("sync", "0002_drain_schedule"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(install, uninstall)]
