"""The model moved here from ops and keeps its table (Meta.db_table): the state moves, the database does not."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ("ops", "0005_prune_task_results_schedule"),
        ('contenttypes', '0002_remove_content_type_name'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
            migrations.CreateModel(
                name='Heartbeat',
                fields=[
                    ('name', models.CharField(choices=[('queue', 'Task queue (a scheduled task ran)'), ('sweeper', 'Event sweeper')], max_length=32, primary_key=True, serialize=False)),
                    ('beat_at', models.DateTimeField()),
                    ('details', models.JSONField(blank=True, default=dict, help_text='What the last run reported.')),
                ],
                options={
                    'db_table': 'ops_heartbeat',
                },
            ),
            migrations.CreateModel(
                name='ErrorKind',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('fingerprint', models.CharField(help_text='Hash of source, kind and message.', max_length=64, unique=True)),
                    ('source', models.CharField(choices=[('processing', 'Event processing'), ('sync', 'Salesforce sync'), ('delivery', 'Alert delivery')], max_length=16)),
                    ('kind', models.CharField(help_text='Exception class or the remote error code.', max_length=100)),
                    ('message', models.TextField(help_text='The message with ids, numbers and addresses replaced by placeholders.')),
                    ('count', models.PositiveBigIntegerField(default=0)),
                    ('first_seen', models.DateTimeField()),
                    ('last_seen', models.DateTimeField()),
                    ('last_example', models.TextField(blank=True, help_text='The latest message as it was (email addresses masked).')),
                    ('last_workspace_key', models.CharField(blank=True, max_length=64)),
                    ('last_object_id', models.CharField(blank=True, max_length=64)),
                    ('window_start', models.DateTimeField(blank=True, help_text='Start of the current rate window.', null=True)),
                    ('window_count', models.PositiveIntegerField(default=0, help_text='Occurrences in the current rate window.')),
                    ('rate_alerted_window', models.DateTimeField(blank=True, null=True)),
                    ('resolved_at', models.DateTimeField(blank=True, help_text='Marked fixed by an admin; a new occurrence reopens it and alerts again.', null=True)),
                    ('last_object_type', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, to='contenttypes.contenttype')),
                ],
                options={
                    'db_table': 'ops_errorkind',
                    'ordering': ['-last_seen'],
                    'indexes': [models.Index(fields=['source', 'last_seen'], name='errorkind_source_seen')],
                },
            ),
            ],
        ),
    ]
