"""Seed one AlertRule per rule with its defaults, and the alert schedules (no catch-up, see settings)."""

from django.db import migrations

ADMIN_RULES = {"needs_review", "sync_paused", "sync_dead_letter", "event_failed", "billing_drift"}
RULES = [
    "trial_started",
    "existing_account_trial",
    "trial_expiring",
    "trial_expired",
    "converted",
    "churned",
    "payment_failed",
    *sorted(ADMIN_RULES),
]
SCHEDULES = {
    "Alerts: send due deliveries": ("alerts.tasks.deliver_due", 1),
    "Alerts: evaluate scheduled rules": ("alerts.tasks.evaluate_scheduled", 10),
    "Alerts: send daily digests": ("alerts.tasks.send_digests", 15),
}


def install(apps, schema_editor):
    AlertRule = apps.get_model("alerts", "AlertRule")
    for key in RULES:
        AlertRule.objects.get_or_create(
            key=key,
            defaults={
                "audience": "admins" if key in ADMIN_RULES else "rep",
                "days_before": "7,3,1" if key == "trial_expiring" else "",
            },
        )
    Schedule = apps.get_model("django_q", "Schedule")
    for name, (func, minutes) in SCHEDULES.items():
        Schedule.objects.update_or_create(
            name=name, defaults={"func": func, "schedule_type": "I", "minutes": minutes, "repeats": -1}
        )


def uninstall(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name__in=SCHEDULES).delete()
    apps.get_model("alerts", "AlertRule").objects.filter(key__in=RULES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("alerts", "0002_rules_routing_delivery"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(install, uninstall)]
