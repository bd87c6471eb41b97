"""The one settings class of the service, read from `CREDIT_MONITOR_*` variables.

Every setting is documented where it is declared. A missing or bad value fails at
start-up with `SettingsError`, naming the variable and how to fix it. Secrets are
`SecretStr`: they never appear in logs, reprs or error messages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PREFIX = "CREDIT_MONITOR_"


class SettingsError(ValueError):
    """A setting is missing or wrong; the message names the variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX, frozen=True, extra="ignore")

    # ---- Kafka ----
    kafka_bootstrap: str = Field(
        "127.0.0.1:9092", description="Kafka bootstrap servers, comma separated host:port"
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = (
        Field("PLAINTEXT", description="How to talk to the brokers")
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "PLAIN", description="SASL mechanism when the protocol is SASL_*"
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user name")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password")
    kafka_ssl_cafile: Path | None = Field(None, description="CA bundle for TLS")
    kafka_ssl_certfile: Path | None = Field(None, description="client certificate (mTLS)")
    kafka_ssl_keyfile: Path | None = Field(None, description="client key (mTLS)")
    topic_prefix: str = Field(
        "", description="prefix for every topic name, to run several monitors on a broker"
    )
    partitions: int = Field(
        6, ge=1, le=1024,
        description="partitions of the input, decision, snapshot and rejected topics; "
        "fixed once the topics exist",
    )
    replication_factor: int = Field(1, ge=1, description="replication of created topics")
    app_id: str = Field("credit-monitor", description="consumer group and changelog prefix")
    kafka_session_timeout_seconds: float = Field(
        10.0, gt=0,
        description="how long the group waits for a silent worker before its partitions "
        "move to another; a killed worker's partitions resume after about this long",
    )

    # ---- PostgreSQL ----
    pg_dsn: SecretStr = Field(
        SecretStr("postgresql://credit_monitor:credit_monitor@127.0.0.1:55432/credit_monitor"),
        description="PostgreSQL DSN of the audit and query store",
    )
    pg_batch_size: int = Field(500, ge=1, description="audit rows written per transaction")
    pg_retry_max_seconds: float = Field(
        10.0, gt=0, description="longest wait between retries while PostgreSQL is away"
    )

    # ---- credit rules ----
    policy_path: Path | None = Field(None, description="policy TOML (default: built-in)")
    retention_days: int = Field(
        7, ge=0, description="days of event time that redeliveries stay harmless"
    )
    mode: Literal["live", "replay"] = Field(
        "live",
        description="live: a wall-clock tick moves overdue on; replay: only event time",
    )
    tick_interval_seconds: float = Field(60.0, gt=0, description="wall-clock tick period")

    # ---- service ----
    web_host: str = Field("127.0.0.1", description="address of /health, /ready, /metrics")
    web_port: int = Field(8080, ge=1, le=65535, description="port of the web endpoints")
    state_dir: Path = Field(Path(".var/worker"), description="the worker's local folder")
    log_format: Literal["text", "json"] = Field("text", description="log line format")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO")

    # ---- operator API ----
    api_host: str = Field("127.0.0.1", description="address the operator API listens on")
    api_port: int = Field(8090, ge=1, le=65535, description="port of the operator API")
    api_tokens_file: Path | None = Field(
        None, description="TOML file of API tokens (name, role, sha256); none: API refuses all"
    )
    api_url: str = Field(
        "http://127.0.0.1:8090", description="where the CLI finds the operator API"
    )
    api_token: SecretStr | None = Field(None, description="the CLI's bearer token")

    @field_validator("kafka_bootstrap")
    @classmethod
    def _hosts(cls, value: str) -> str:
        for part in value.split(","):
            host, sep, port = part.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"expected host:port[,host:port...], got {part!r}")
        return value

    @field_validator("pg_dsn")
    @classmethod
    def _dsn(cls, value: SecretStr) -> SecretStr:
        scheme = urlsplit(value.get_secret_value()).scheme
        if scheme not in ("postgresql", "postgres"):
            raise ValueError("expected a postgresql://user:password@host:port/db DSN")
        return value

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    def pg_dsn_for_logs(self) -> str:
        """The DSN with its password masked."""
        dsn = self.pg_dsn.get_secret_value()
        scheme, sep, rest = dsn.partition("://")
        if "@" in rest:
            # The user part ends at the last "@": a password with an unencoded "/" or
            # "#" is still masked whole.
            user, _, rest = rest.rpartition("@")
            if ":" in user:
                user = user.split(":", 1)[0] + ":***"
            rest = user + "@" + rest
        parts = urlsplit(scheme + sep + rest)
        # libpq and asyncpg also take the password as a query parameter.
        query = "&".join(
            (k + "=***") if k.lower() in ("password", "sslpassword") else
            (k + ("=" + v if eq else ""))
            for k, eq, v in (p.partition("=") for p in parts.query.split("&") if p)
        )
        return urlunsplit(parts._replace(query=query))


def load_settings() -> Settings:
    """Settings from the environment, or a `SettingsError` naming each bad variable."""
    try:
        return Settings()  # type: ignore[call-arg]
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False, include_input=False):
            name = PREFIX + "_".join(str(p) for p in err["loc"]).upper()
            problems.append(f"{name}: {err['msg']}")
        raise SettingsError(
            "bad settings: " + "; ".join(problems) + " (set the variable or unset it to "
            "use the default; see README.md, Settings)"
        ) from None
