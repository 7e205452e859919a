"""ReviewItem moved here from linking, and WorkspaceLock from events (the lock every writer of a
workspace's state takes); each keeps its table (Meta.db_table): the state moves, the database does not. Its many-to-many table (linking_reviewitem_events) follows the model's table name."""

import django.db.models.deletion
import workspaces.auditing
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("linking", "0001_initial"),
        ('events', '0004_webhookbatch'),
        ('workspaces', '0005_workspace_acquisition_and_timezone'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
            migrations.CreateModel(
                name='ReviewItem',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('kind', models.CharField(choices=[('no_trial_data', 'No trial data'), ('conflicting_data', 'Conflicting data'), ('no_account_match', 'No account match'), ('processing_failed', 'Processing failed'), ('rejected_event', 'Rejected event'), ('sync_failed', 'Salesforce sync failed')], max_length=32)),
                    ('dedupe_key', models.CharField(help_text='Identifies the question (kind and evidence): once answered, the same question is not asked again.', max_length=200)),
                    ('reason', models.TextField(help_text='What is wrong, precisely enough to act on.')),
                    ('status', models.CharField(choices=[('open', 'Open'), ('resolved', 'Resolved')], default='open', max_length=16)),
                    ('resolution_note', models.TextField(blank=True)),
                    ('resolved_at', models.DateTimeField(blank=True, null=True)),
                    ('created_at', models.DateTimeField(auto_now_add=True)),
                    ('updated_at', models.DateTimeField(auto_now=True)),
                    ('events', models.ManyToManyField(blank=True, related_name='review_items', to='events.event')),
                    ('lead', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='review_items', to='workspaces.lead')),
                    ('resolved_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                    ('workspace', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='review_items', to='workspaces.workspace')),
                ],
                options={
                    'db_table': 'linking_reviewitem',
                    'ordering': ['-created_at'],
                    'indexes': [models.Index(fields=['status', 'kind'], name='review_status_kind')],
                    'constraints': [models.UniqueConstraint(fields=('workspace', 'dedupe_key'), name='review_unique_question'), models.CheckConstraint(condition=models.Q(models.Q(('resolved_at__isnull', True), ('status', 'open')), models.Q(('resolved_at__isnull', False), ('status', 'resolved')), _connector='OR'), name='review_resolved_has_time')],
                },
                bases=(workspaces.auditing.AuditSnapshot, models.Model),
            ),
            migrations.CreateModel(
                name='WorkspaceLock',
                fields=[
                    ('workspace_key', models.CharField(max_length=64, primary_key=True, serialize=False)),
                    ('processed_at', models.DateTimeField(blank=True, null=True)),
                ],
                options={
                    'db_table': 'events_workspacelock',
                },
            ),
            ],
        ),
    ]
