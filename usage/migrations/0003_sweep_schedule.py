"""Every minute: the behaviour sweep (usage/tasks.py), for what time alone changes."""

from django.db import migrations

NAME = "Behaviour: sweep profiles whose windows moved"


def install(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.update_or_create(
        name=NAME, defaults={"func": "usage.tasks.sweep_behaviour", "schedule_type": "I", "minutes": 1, "repeats": -1}
    )


def uninstall(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("usage", "0002_shipped_definitions"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(install, uninstall)]
