"""Install the ops schedules (no catch-up: Q_CLUSTER has catch_up False): the queue heartbeat every
minute, first run at once so /healthz is green as soon as a cluster runs, and the SLA checks."""

from django.db import migrations
from django.utils import timezone

SCHEDULES = {
    "Ops: queue heartbeat": ("ops.tasks.heartbeat", 1),
    "Ops: SLA checks": ("ops.tasks.evaluate_slas", 5),
}


def install(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    for name, (func, minutes) in SCHEDULES.items():
        Schedule.objects.update_or_create(
            name=name,
            defaults={
                "func": func,
                "schedule_type": "I",
                "minutes": minutes,
                "repeats": -1,
                "next_run": timezone.now(),
            },
        )


def uninstall(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name__in=SCHEDULES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("ops", "0001_errors_and_heartbeats"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(install, uninstall)]
