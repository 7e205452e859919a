"""Every minute: the trigger engine's timer sweep (triggers.tasks.fire_due_timers) fires the stalls,
silences, dates, follow-ups and quiet-hours releases that came due. The timers are rows; the schedule
only rings the bell, so a missed minute is caught up by the next."""

from django.db import migrations

NAME = "Triggers: due timers"


def install(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.update_or_create(
        name=NAME,
        defaults={"func": "triggers.tasks.fire_due_timers", "schedule_type": "I", "minutes": 1, "repeats": -1},
    )


def uninstall(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("triggers", "0003_firings_timers"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(install, uninstall)]
