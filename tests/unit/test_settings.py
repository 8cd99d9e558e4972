"""Settings: YAML plus environment, every fault reported with its path, secrets never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from borobridge.cli import main
from borobridge.errors import ConfigError
from borobridge.secret import Secret
from borobridge.settings import load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_need_no_file() -> None:
    settings = load_settings(None, {})
    assert settings.boro.url == ""
    assert settings.boro.projects == "all"
    assert settings.first_start.mode == "now"


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "boro:\n  url: http://boro.example/ctrl_api/v1/json\n  poll_interval: 5\n")
    settings = load_settings(path, {"BOROBRIDGE_BORO__POLL_INTERVAL": "0.5", "BOROBRIDGE_BORO__PROJECTS": "[23, 24]"})
    assert settings.boro.url == "http://boro.example/ctrl_api/v1/json"
    assert settings.boro.poll_interval == 0.5
    assert settings.boro.projects == [23, 24]


def test_every_error_is_listed_with_its_path(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "boro:\n  poll_interval: fast\n  page_size: 500\n  filter:\n    trigger_groups: [eth, video]\nbogus: 1\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path, {})
    assert sorted(caught.value.errors) == [
        "bogus: unknown key; expected one of boro, first_start, health, kafka, logging, mqtt, name, output, "
        "reconcile, simulator, state, webhook",
        'boro.filter.trigger_groups[1]: expected one of eth, etr, qoe, ott, sys, scte35, got "video"',
        "boro.page_size: expected an integer <= 100, got 500",
        'boro.poll_interval: expected a number, got "fast"',
    ]


def test_negative_interval_names_the_bound(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, "boro:\n  poll_interval: -1\n"), {})
    assert caught.value.errors == ["boro.poll_interval: expected a number > 0.0, got -1"]


def test_since_mode_requires_a_time(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, "first_start:\n  mode: since\n"), {})
    assert caught.value.errors == ["first_start.since: required when first_start.mode is 'since' (an RFC 3339 time)"]


def test_secret_from_a_file_is_read_and_masked(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("c2VjcmV0LWtleS1mb3ItYm9ybw==\n", encoding="utf-8")
    path = write(tmp_path, f"boro:\n  hmac:\n    key_file: {key_file}\n")
    settings = load_settings(path, {})
    assert settings.boro.hmac is not None
    assert settings.boro.hmac.key == Secret("c2VjcmV0LWtleS1mb3ItYm9ybw==")
    assert "c2VjcmV0" not in repr(settings)


def test_secret_from_the_environment_stays_a_string() -> None:
    settings = load_settings(None, {"BOROBRIDGE_BORO__HMAC__KEY": "0123"})
    assert settings.boro.hmac is not None
    assert settings.boro.hmac.key.reveal() == "0123"


def test_unreadable_secret_file_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, f"boro:\n  hmac:\n    key_file: {tmp_path / 'missing'}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, {})
    assert caught.value.errors[0].startswith("boro.hmac.key_file: cannot read secret file")


def test_check_config_prints_masked_secrets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "boro:\n  url: http://boro.example/ctrl_api/v1/json\n  hmac:\n    key: aHVudGVyMg==\n")
    assert main(["check-config", str(path)]) == 0
    printed = capsys.readouterr().out
    assert "aHVudGVyMg" not in printed
    assert "key: '**********'" in printed
    assert "url: http://boro.example/ctrl_api/v1/json" in printed


def test_check_config_lists_errors_and_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "boro:\n  poll_interval: fast\n")
    assert main(["check-config", str(path)]) == 2
    assert 'boro.poll_interval: expected a number, got "fast"' in capsys.readouterr().err


def test_an_hmac_key_that_is_neither_hex_nor_base64_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, {"BOROBRIDGE_BORO__HMAC__KEY": "not a key!"})
    assert caught.value.errors == ["boro.hmac.key: the API key is neither 64 hex characters nor valid base64"]


def test_not_a_mapping_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected a mapping at the top level"):
        load_settings(write(tmp_path, "- 1\n- 2\n"), {})
