"""Kafka TLS and SASL settings in the form faust wants them."""

from __future__ import annotations

from typing import Any

import faust

from monitor.kafka_config import ssl_context
from monitor.settings import Settings


def faust_credentials(settings: Settings) -> Any:
    """faust credentials for the configured protocol; None for PLAINTEXT."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(ssl_context(settings))
    password = settings.kafka_sasl_password.get_secret_value() if (
        settings.kafka_sasl_password) else ""
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username or "",
        password=password,
        ssl_context=ssl_context(settings),
        mechanism=settings.kafka_sasl_mechanism,
    )
