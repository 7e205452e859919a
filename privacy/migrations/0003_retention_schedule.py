"""Payload retention once a day. No catch-up (Q_CLUSTER catch_up False): after an outage one run does
everything due, because a run picks every settled event past retention, not one day's worth."""

from django.db import migrations

NAME = "Privacy: event payload retention"


def install(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.update_or_create(
        name=NAME, defaults={"func": "privacy.tasks.payload_retention", "schedule_type": "D", "repeats": -1}
    )


def uninstall(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("privacy", "0002_role_groups"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(install, uninstall)]
