"""Kafka TLS and SASL settings in the form faust wants them."""

from __future__ import annotations

import ssl
from typing import Any

import faust

from monitor.settings import Settings


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return None
    context = ssl.create_default_context(
        cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
    )
    if settings.kafka_ssl_certfile:
        context.load_cert_chain(
            str(settings.kafka_ssl_certfile),
            str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
        )
    return context


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


def aiokafka_kwargs(settings: Settings) -> dict[str, Any]:
    """Connection keyword arguments for aiokafka clients (producer, consumer, admin)."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security_protocol,
    }
    context = ssl_context(settings)
    if context is not None:
        kwargs["ssl_context"] = context
    if settings.kafka_security_protocol.startswith("SASL"):
        kwargs["sasl_mechanism"] = settings.kafka_sasl_mechanism
        kwargs["sasl_plain_username"] = settings.kafka_sasl_username
        kwargs["sasl_plain_password"] = (
            settings.kafka_sasl_password.get_secret_value()
            if settings.kafka_sasl_password else None
        )
    return kwargs
