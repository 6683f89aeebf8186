"""Settings and the environment: `to_env` is the exact reverse of `from_env`, field by field."""

import dataclasses
import re
from pathlib import Path

import pytest

from chalicelib.config import Settings

ROOT = Path(__file__).resolve().parents[1]


def _other_value(index: int, field: dataclasses.Field):
    """A value unlike the default and unlike every other field's, so a swapped mapping shows too."""
    default = field.default
    if field.type == "bool":
        return not default
    if field.type == "int":
        return default + 100_000 * (index + 1)
    if field.type in ("str", "str | None"):
        return f"{field.name}-{index}"
    if field.type == "tuple[str, ...]":
        return (f"{field.name}-a", f"{field.name}-b")
    pytest.fail(f"no test value for {field.name}: {field.type}; teach _other_value its type")


def _every_field_changed() -> Settings:
    return Settings(**{f.name: _other_value(i, f) for i, f in enumerate(dataclasses.fields(Settings))})


def test_the_defaults_survive_the_round_trip():
    assert Settings.from_env(Settings().to_env()) == Settings()


def test_settings_with_every_field_changed_survive_the_round_trip():
    changed = _every_field_changed()
    for field in dataclasses.fields(Settings):
        assert getattr(changed, field.name) != getattr(Settings(), field.name), field.name

    back = Settings.from_env(changed.to_env())

    for field in dataclasses.fields(Settings):
        assert getattr(back, field.name) == getattr(changed, field.name), field.name
    assert back == changed


def test_the_environment_is_all_strings_and_none_becomes_empty():
    env = Settings().to_env()

    assert all(isinstance(name, str) and isinstance(value, str) for name, value in env.items())
    assert env["MYSQL_SECRET_ARN"] == "" and env["AWS_ENDPOINT_URL"] == ""
    assert Settings.from_env(env).mysql_secret_arn is None


def test_every_variable_is_in_the_readme_table():
    table = {
        name
        for line in (ROOT / "README.md").read_text().splitlines()
        if line.startswith("| `")
        for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1])
    }

    assert set(Settings().to_env()) <= table
