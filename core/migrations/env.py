"""Alembic environment: always run from :mod:`callvet.core.migrations` with a live connection
(``config.attributes["connection"]``); there is no ``alembic.ini`` and no URL in a file."""

from __future__ import annotations

from alembic import context
from callvet.core.db import _load_table_modules, metadata

_load_table_modules()
connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True,
                  compare_type=True)
with context.begin_transaction():
    context.run_migrations()
