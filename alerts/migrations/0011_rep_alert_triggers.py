"""One engine: each workspace alert rule becomes a shipped trigger (alerts/engine.py), enabled, since it is
today's behaviour; disabling one in the admin stops that alert. An alert names the firing that raised it.

The definitions are frozen here as they shipped; `alerts.engine.rep_alert_triggers_ensure` (post_migrate)
makes any that are missing from the current ones, never changing one that exists."""

import django.db.models.deletion
from django.db import migrations, models

ADMIN_RULES = {"needs_review"}
RULES = {
    "trial_started": "New self-serve trial",
    "existing_account_trial": "New trial from an existing account",
    "trial_expiring": "Trial expiring",
    "trial_expired": "Trial expired without conversion",
    "converted": "Converted",
    "churned": "Churned",
    "payment_failed": "Payment failed",
    "needs_review": "Needs review",
}


def _trigger(rule, label):
    admins = rule in ADMIN_RULES
    return {
        "key": f"alert_{rule}",
        "name": f"{'Admin' if admins else 'Rep'} alert: {label}",
        "description": f"Raises the {label.lower()} alert (alerts/rules.py: {rule}); its audience, channels "
        "and timing are the alert rule's (Alert rules in the admin). Disable it to stop that alert.",
        "when": {"kind": "alert_rule", "rule": rule},
        "audience": "team" if admins else "owner_rep",
        "team": "lifecycle-admins" if admins else "",
        "actions": [{"channel": "rep_alert", "template": rule}],
        "transactional": True,
        "enabled": True,
    }


def install(apps, schema_editor):
    Trigger = apps.get_model("triggers", "Trigger")
    for rule, label in RULES.items():
        item = _trigger(rule, label)
        Trigger.objects.get_or_create(key=item.pop("key"), defaults=item)


def uninstall(apps, schema_editor):
    """Back to rules without triggers: the triggers go unless they have fired (firings keep them: PROTECT)."""
    Trigger = apps.get_model("triggers", "Trigger")
    Trigger.objects.filter(key__in=[f"alert_{rule}" for rule in RULES], firings__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("alerts", "0010_owners_from_first_alert"),
        ("triggers", "0004_timer_sweep_schedule"),
    ]

    operations = [
        migrations.AddField(
            model_name="alert",
            name="firing",
            field=models.ForeignKey(
                blank=True,
                help_text="The trigger firing that raised it (why, in the engine's terms); empty for admin-only rules.",
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="alerts",
                to="triggers.firing",
            ),
        ),
        migrations.RunPython(install, uninstall),
    ]
