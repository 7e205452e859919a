"""Existing databases follow the restructure (docs/architecture.md): content types of the models that
changed app take the new app's label (their permissions, role grants and audit entries follow them), and
the scheduled tasks point at the modules their functions live in now. A new database has nothing to
rename: both steps find nothing and do nothing."""

from django.db import migrations

#: (old app label, model) -> new app label, for every model that moved with its table.
MOVED_MODELS = {
    ("events", "workspacelock"): "workspaces",
    ("linking", "reviewitem"): "workspaces",
    ("ops", "heartbeat"): "failures",
    ("ops", "errorkind"): "failures",
    ("ops", "sourceday"): "events",
    ("ops", "rollupcursor"): "events",
    ("triggers", "usagedaily"): "usage",
    ("triggers", "usagedailyuser"): "usage",
}

#: The task functions that moved, old dotted path -> new.
MOVED_TASKS = {
    "events.tasks.process_workspaces": "processing.tasks.process_workspaces",
    "events.tasks.process_marketo_leads": "processing.tasks.process_marketo_leads",
    "events.tasks.sweep": "processing.tasks.sweep",
    "sync.tasks.drain_outbox": "salesforce.tasks.drain_outbox",
    "sync.tasks.release_pilot": "salesforce.tasks.release_pilot",
    "sync.tasks.reconcile_billing": "billing.tasks.reconcile_billing",
    "ops.tasks.heartbeat": "failures.tasks.heartbeat",
    "ops.tasks.evaluate_slas": "alerts.tasks.evaluate_slas",
    "ops.tasks.prune_task_results": "processing.tasks.prune_task_results",
    "triggers.tasks.rollup_usage": "usage.tasks.rollup_usage",
}


def relabel_content_types(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    for (old_label, model), new_label in MOVED_MODELS.items():
        if ContentType.objects.filter(app_label=new_label, model=model).exists():
            continue  # already there (a database made after the move)
        ContentType.objects.filter(app_label=old_label, model=model).update(app_label=new_label)


def unlabel_content_types(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    for (old_label, model), new_label in MOVED_MODELS.items():
        if not ContentType.objects.filter(app_label=old_label, model=model).exists():
            ContentType.objects.filter(app_label=new_label, model=model).update(app_label=old_label)


def follow_tasks(apps, schema_editor, moves=MOVED_TASKS):
    Schedule = apps.get_model("django_q", "Schedule")
    for old, new in moves.items():
        Schedule.objects.filter(func=old).update(func=new)


def unfollow_tasks(apps, schema_editor):
    follow_tasks(apps, schema_editor, {new: old for old, new in MOVED_TASKS.items()})


class Migration(migrations.Migration):
    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("django_q", "0018_task_success_index"),
        ("events", "0005_sourceday_from_ops"),
        ("failures", "0001_initial"),
        ("ops", "0006_ledger_to_failures"),
        ("usage", "0004_rollups_from_triggers"),
        ("triggers", "0002_rollups_to_usage"),
        ("workspaces", "0006_reviewitem_from_linking"),
        ("linking", "0002_reviewitem_to_workspaces"),
        ("sync", "0006_pilot_release"),
        ("alerts", "0008_exchange_rate"),
        ("privacy", "0003_retention_schedule"),
        ("usage", "0003_sweep_schedule"),
    ]

    operations = [
        migrations.RunPython(relabel_content_types, unlabel_content_types),
        migrations.RunPython(follow_tasks, unfollow_tasks),
    ]
