"""The service's settings: read from CREDIT_MONITOR_*, bad values named, secrets hidden."""

from __future__ import annotations

import pytest

from monitor.settings import Settings, SettingsError, load_settings

SECRET = "s3cr3t-Pa55"


def test_secrets_never_show_in_reprs_dumps_or_the_dsn_for_logs(monkeypatch) -> None:
    monkeypatch.setenv("CREDIT_MONITOR_PG_DSN", f"postgresql://cm:{SECRET}@db:5432/cm")
    monkeypatch.setenv("CREDIT_MONITOR_KAFKA_SASL_PASSWORD", SECRET)
    settings = load_settings()

    for text in (repr(settings), str(settings), settings.model_dump_json(),
                 settings.pg_dsn_for_logs()):
        assert SECRET not in text
    assert settings.pg_dsn_for_logs() == "postgresql://cm:***@db:5432/cm"
    assert settings.pg_dsn.get_secret_value().endswith("@db:5432/cm")


def test_bad_values_fail_at_start_naming_each_variable(monkeypatch) -> None:
    monkeypatch.setenv("CREDIT_MONITOR_PARTITIONS", "many")
    monkeypatch.setenv("CREDIT_MONITOR_KAFKA_BOOTSTRAP", "localhost")
    monkeypatch.setenv("CREDIT_MONITOR_MODE", "fast")

    with pytest.raises(SettingsError) as caught:
        load_settings()

    message = str(caught.value)
    for name in ("CREDIT_MONITOR_PARTITIONS", "CREDIT_MONITOR_KAFKA_BOOTSTRAP",
                 "CREDIT_MONITOR_MODE"):
        assert name in message


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(Exception):
        settings.partitions = 3  # type: ignore[misc]


def test_topic_prefix_applies_to_every_topic() -> None:
    assert Settings(topic_prefix="acme.").topic("credit.events") == "acme.credit.events"


@pytest.mark.parametrize("dsn, secret", [
    ("postgresql://cm:s3cr#t/x@db:5432/cm", "s3cr#t/x"),
    ("postgresql://cm@db:5432/cm?sslmode=require&password=hunter2", "hunter2"),
    ("postgresql://cm:pa%40ss@db/cm?search_path=credit_demo", "pa%40ss"),
])
def test_the_logged_dsn_hides_every_form_of_password(dsn: str, secret: str) -> None:
    logged = Settings(pg_dsn=dsn).pg_dsn_for_logs()
    assert secret not in logged and "***" in logged
    assert "cm" in logged and "db" in logged
