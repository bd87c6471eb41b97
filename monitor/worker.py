"""Wiring: settings, policy, topics, the stream processors and the audit sink, in one
worker process. `credit-monitor worker` runs it."""

from __future__ import annotations

import asyncio
import logging
import sys

from monitor.domain.policy import Policy, PolicyError
from monitor.logs import configure
from monitor.settings import SettingsError, load_settings

log = logging.getLogger(__name__)


def run_worker() -> int:
    try:
        settings = load_settings()
        policy = (Policy.from_file(settings.policy_path) if settings.policy_path
                  else Policy.default_policy())
    except (SettingsError, PolicyError) as exc:
        print(f"credit-monitor worker: {exc}", file=sys.stderr)
        return 2
    configure(settings.log_format, settings.log_level)
    try:
        # faust keeps its table folder here and does not create the parents itself.
        settings.state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.error("cannot create the state folder %s: %s; set "
                  "CREDIT_MONITOR_STATE_DIR to a writable folder", settings.state_dir, exc)
        return 2

    import faust

    from streams.app import CreditStreams
    from streams.topology import TopologyError, ensure_topics

    try:
        created = asyncio.run(ensure_topics(settings))
    except TopologyError as exc:
        log.error("cannot start: %s", exc)
        return 2
    except Exception as exc:  # noqa: BLE001 - the broker is the usual cause
        log.error("cannot reach Kafka at %s to create topics: %s; start it with "
                  "`bash deploy/kafka.sh start` or fix CREDIT_MONITOR_KAFKA_BOOTSTRAP",
                  settings.kafka_bootstrap, exc)
        return 2
    log.info("topics ready (created %s); PostgreSQL at %s", created or "none",
             settings.pg_dsn_for_logs())

    streams = CreditStreams(settings, policy)
    worker = faust.Worker(streams.app, loglevel=settings.log_level,
                          override_logging=False, quiet=True)
    worker.execute_from_commandline()
    return 0
