"""The model moved here from triggers and keeps its table (Meta.db_table): the state moves, the database does not."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("triggers", "0001_initial"),
        ('usage', '0003_sweep_schedule'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
            migrations.CreateModel(
                name='UsageDaily',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('workspace_key', models.CharField(max_length=64)),
                    ('feature', models.CharField(max_length=100)),
                    ('product', models.CharField(blank=True, help_text='"" when the event named none.', max_length=64)),
                    ('day', models.DateField(help_text="UTC day of the events' occurred_at.")),
                    ('events', models.PositiveIntegerField(default=0, help_text='Number of usage events.')),
                    ('count', models.BigIntegerField(default=0, help_text='Sum of data.count (1 per event by default).')),
                    ('duration_seconds', models.FloatField(default=0.0)),
                    ('errors', models.PositiveIntegerField(default=0, help_text='Events with outcome "error".')),
                    ('first_seen_at', models.DateTimeField()),
                    ('last_seen_at', models.DateTimeField()),
                ],
                options={
                    'verbose_name': 'daily usage',
                    'verbose_name_plural': 'daily usage',
                    'db_table': 'triggers_usagedaily',
                    'indexes': [models.Index(fields=['workspace_key', 'day'], name='usagedaily_workspace_day')],
                    'constraints': [models.UniqueConstraint(fields=('workspace_key', 'feature', 'product', 'day'), name='usagedaily_unique_key')],
                },
            ),
            migrations.CreateModel(
                name='UsageDailyUser',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('workspace_key', models.CharField(max_length=64)),
                    ('feature', models.CharField(max_length=100)),
                    ('product', models.CharField(blank=True, max_length=64)),
                    ('day', models.DateField()),
                    ('user_email', models.EmailField(help_text='Lower-case.', max_length=254)),
                ],
                options={
                    'db_table': 'triggers_usagedailyuser',
                    'constraints': [models.UniqueConstraint(fields=('workspace_key', 'feature', 'product', 'day', 'user_email'), name='usagedailyuser_unique_key')],
                },
            ),
            ],
        ),
    ]
