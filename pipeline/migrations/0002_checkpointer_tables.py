"""Creates LangGraph's checkpoint tables, so `migrate` is the only set-up step.

Non-atomic: PostgresSaver.setup() runs CREATE INDEX CONCURRENTLY on its own autocommit
connection, which cannot happen inside a migration transaction.
"""

from django.db import migrations


def create_checkpoint_tables(apps, schema_editor):
    from pipeline.checkpointer import setup_checkpointer

    setup_checkpointer()


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("pipeline", "0001_initial")]

    operations = [
        migrations.RunPython(create_checkpoint_tables, migrations.RunPython.noop, elidable=False),
    ]
