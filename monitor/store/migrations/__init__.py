"""Versioned SQL migrations of the store; `migrate(dsn)` applies the missing ones."""

from monitor.store.migrations.migrate import Migration, available_migrations, migrate

__all__ = ["Migration", "available_migrations", "migrate"]
