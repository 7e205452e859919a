"""Drain the outbox every minute as well (retries and resumes after a pause); no catch-up."""

from django.db import migrations

NAME = "Salesforce outbox drain"


def install(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.update_or_create(
        name=NAME, defaults={"func": "sync.tasks.drain_outbox", "schedule_type": "I", "minutes": 1, "repeats": -1}
    )


def uninstall(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("sync", "0001_initial"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(install, uninstall)]
