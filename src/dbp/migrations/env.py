"""Alembic environment: the URL comes from the caller (``dbp db upgrade``), never from a file."""

from __future__ import annotations

from alembic import context

from dbp.access import models as _access_models  # noqa: F401  (registers tables)
from dbp.audit import models as _audit_models  # noqa: F401
from dbp.db import Base, make_engine
from dbp.integrity import models as _integrity_models  # noqa: F401
from dbp.passports import models as _passport_models  # noqa: F401
from dbp.registry import models as _registry_models  # noqa: F401
from dbp.replication import models as _replication_models  # noqa: F401
from dbp.resolver import models as _resolver_models  # noqa: F401

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is not None:
        context.configure(connection=connectable, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
