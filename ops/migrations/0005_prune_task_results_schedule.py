"""Schedule the pruning of successful task results (Q_CLUSTER save_limit is 0: django-q2 no longer prunes)."""

from django.db import migrations
from django.utils import timezone

NAME = "Ops: prune task results"


def install(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.update_or_create(
        name=NAME,
        defaults={
            "func": "ops.tasks.prune_task_results",
            "schedule_type": "I",
            "minutes": 5,
            "repeats": -1,
            "next_run": timezone.now(),
        },
    )


def uninstall(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [("ops", "0004_source_traffic")]

    operations = [migrations.RunPython(install, uninstall)]
