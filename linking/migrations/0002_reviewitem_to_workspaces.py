"""ReviewItem moves to workspaces with its tables."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("workspaces", "0006_reviewitem_from_linking"),
        ('linking', '0001_initial'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
            migrations.DeleteModel(
                name='ReviewItem',
            ),
            ],
        ),
    ]
