"""Room on each page of usage_profile for updated rows (PostgreSQL's fillfactor; other databases: nothing).

Every usage batch rewrites its workspaces' profiles. An update that changes no indexed column (the next
due time moves once a day) can stay on its page as a heap-only tuple, with no new index entries, but only
when the page has room: at the default fillfactor of 100 the pages are full, so each rewrite went to
another page and added an entry to all three indexes.
"""

from django.db import migrations


def fillfactor(percent: int):
    def apply(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            table = schema_editor.quote_name(apps.get_model("usage", "Profile")._meta.db_table)
            schema_editor.execute(f"ALTER TABLE {table} SET (fillfactor = {percent})")

    return apply


class Migration(migrations.Migration):
    dependencies = [
        ("usage", "0006_usage_local_days"),
    ]

    operations = [migrations.RunPython(fillfactor(70), fillfactor(100))]
