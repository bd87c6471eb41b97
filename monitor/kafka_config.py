"""Connection keyword arguments for aiokafka clients, built from `Settings`.

The audit sink and the streaming service both open aiokafka clients (consumer,
producer, admin); they take their TLS and SASL arguments from here so that a
broker that needs credentials is configured in one place.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from monitor.settings import PREFIX, Settings, SettingsError

__all__ = ["KafkaUnavailable", "kafka_client_kwargs", "ssl_context"]


class KafkaUnavailable(ConnectionError):
    """The Kafka brokers could not be reached; retrying later helps."""


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context for SSL and SASL_SSL, or None for plaintext protocols.

    Without `kafka_ssl_cafile` the system's CA bundle verifies the brokers.
    A client certificate is loaded only when `kafka_ssl_certfile` is set.
    """
    if settings.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return None
    for name in ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile"):
        path: Path | None = getattr(settings, name)
        if path is not None and not path.is_file():
            raise SettingsError(
                f"{PREFIX}{name.upper()}: {path} is not a readable file "
                "(point it at the PEM file, or unset it)"
            )
    if settings.kafka_ssl_keyfile and not settings.kafka_ssl_certfile:
        raise SettingsError(
            f"{PREFIX}KAFKA_SSL_KEYFILE is set without {PREFIX}KAFKA_SSL_CERTFILE "
            "(a client key needs its certificate)"
        )
    cafile = settings.kafka_ssl_cafile
    try:
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=str(cafile) if cafile else None
        )
    except ssl.SSLError as exc:
        raise SettingsError(
            f"{PREFIX}KAFKA_SSL_CAFILE: {cafile} holds no usable CA certificate "
            f"({exc}); it must be a PEM bundle"
        ) from exc
    if settings.kafka_ssl_certfile is not None:
        keyfile = settings.kafka_ssl_keyfile
        try:
            # An empty passphrase instead of None: with None OpenSSL would ask for
            # one on the terminal and a worker without one would hang at start-up.
            context.load_cert_chain(
                str(settings.kafka_ssl_certfile),
                str(keyfile) if keyfile else None,
                password=b"",
            )
        except ssl.SSLError as exc:
            raise SettingsError(
                f"{PREFIX}KAFKA_SSL_CERTFILE / {PREFIX}KAFKA_SSL_KEYFILE cannot be "
                f"loaded ({exc}): they must be PEM files, the key must match the "
                "certificate and must not be encrypted (there is no passphrase setting)"
            ) from exc
    return context


def kafka_client_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments every aiokafka client takes: servers, protocol, TLS, SASL.

    Usage::

        consumer = AIOKafkaConsumer(*topics, group_id=..., **kafka_client_kwargs(s))
        admin = AIOKafkaAdminClient(**kafka_client_kwargs(s))

    Raises `SettingsError` naming the variable when SASL lacks a user or password
    or a TLS file cannot be read, so a misconfiguration fails at start-up rather
    than as an authentication loop against the brokers.
    """
    protocol = settings.kafka_security_protocol
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": protocol,
        "client_id": settings.app_id,
    }

    context = ssl_context(settings)
    if context is not None:
        kwargs["ssl_context"] = context

    if protocol.startswith("SASL_"):
        password = settings.kafka_sasl_password
        missing = [
            f"{PREFIX}{name.upper()}"
            for name, value in (
                ("kafka_sasl_username", settings.kafka_sasl_username),
                ("kafka_sasl_password", password and password.get_secret_value()),
            )
            if not value
        ]
        if missing:
            raise SettingsError(
                f"{' and '.join(missing)} must be set when "
                f"{PREFIX}KAFKA_SECURITY_PROTOCOL is {protocol}"
            )
        assert password is not None
        kwargs["sasl_mechanism"] = settings.kafka_sasl_mechanism
        kwargs["sasl_plain_username"] = settings.kafka_sasl_username
        kwargs["sasl_plain_password"] = password.get_secret_value()
    return kwargs
