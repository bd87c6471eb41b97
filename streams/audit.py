"""The audit sink as a service of the worker: migrations first, then the sink.

The sink reads the output topics with its own consumer group and commits only what
PostgreSQL has stored, so while PostgreSQL is away the credit decisions go on, Kafka
holds the backlog, and the sink catches up when the database returns.
"""

from __future__ import annotations

import logging

import mode

from monitor.settings import Settings
from monitor.store.errors import StoreError, StoreUnavailable
from monitor.store.migrations.migrate import migrate
from monitor.store.sink import AuditSink

log = logging.getLogger(__name__)


class AuditService(mode.Service):
    """Applies the schema migrations (retrying while PostgreSQL is away), then runs
    the audit sink until the worker stops."""

    def __init__(self, settings: Settings, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.settings = settings
        self.sink: AuditSink | None = None

    async def on_start(self) -> None:
        self.add_future(self._run())

    async def _run(self) -> None:
        delay = 0.5
        while not self.should_stop:
            try:
                applied = await migrate(self.settings.pg_dsn.get_secret_value())
            except StoreUnavailable as exc:
                log.warning("PostgreSQL at %s is not available (%s); decisions go on and "
                            "the audit log catches up once it is back; retrying in %.1fs",
                            self.settings.pg_dsn_for_logs(), exc, delay)
            except StoreError as exc:
                log.error("cannot migrate the audit schema at %s: %s; fix the database "
                          "or CREDIT_MONITOR_PG_DSN, retrying in %.1fs",
                          self.settings.pg_dsn_for_logs(), exc, delay)
            else:
                if applied:
                    log.info("applied schema migrations %s", applied)
                break
            await self.sleep(delay)
            delay = min(delay * 2, self.settings.pg_retry_max_seconds)
        if self.should_stop:
            return
        self.sink = AuditSink(self.settings)
        await self.sink.start()
        log.info("audit sink started")

    async def on_stop(self) -> None:
        if self.sink is not None:
            await self.sink.stop()
