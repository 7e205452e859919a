"""Every minute: alerts for the error kinds the failure ledger marked as due (alerts/error_alerts.py).
Until this change the ledger raised them itself, which made the lowest app call the alerts app."""

from django.db import migrations

NAME = "Alerts: error kinds"


def install(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.update_or_create(
        name=NAME,
        defaults={"func": "alerts.tasks.raise_error_alerts", "schedule_type": "I", "minutes": 1, "repeats": -1},
    )


def uninstall(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("alerts", "0008_exchange_rate"),
        ("failures", "0002_pending_alerts"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(install, uninstall)]
