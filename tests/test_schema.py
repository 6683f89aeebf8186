"""The schema is the project's versioned migration, applied by a command."""

import subprocess
import sys
import uuid
from dataclasses import replace
from pathlib import Path

import pymysql
import pytest
from chalice.test import Client

import app as app_module
from chalicelib import runtime as runtime_module
from chalicelib import schema
from chalicelib.runtime import Runtime
from chalicelib.schema import migrate, pending
from chalicelib.store import connect_args


def test_migrations_apply_once(settings):
    assert migrate(settings.mysql_url) == []  # the fixture applied them; nothing is pending


def test_the_migrate_command_reports_a_current_schema(settings):
    result = subprocess.run(
        [sys.executable, "-m", "chalicelib.schema", "--url", settings.mysql_url],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert result.returncode == 0, result.stderr
    assert "the schema is current" in result.stdout


def test_the_indexes_for_listing_and_sweeping_exist(mysql):
    with mysql.cursor() as cur:
        cur.execute("SHOW INDEX FROM jobs")
        indexes = {}
        for row in cur.fetchall():
            indexes.setdefault(row["Key_name"], []).append(row["Column_name"])
    assert indexes["ix_jobs_owner"] == ["owner", "id"]
    assert indexes["ix_jobs_owner_status"] == ["owner", "status", "id"]
    assert indexes["ix_jobs_status_updated"] == ["status", "updated_at"]
    assert indexes["uq_jobs_owner_idempotency"] == ["owner", "idempotency_key"]


# --- the migrate function (what `make deploy` invokes inside the VPC) -------------------------------
@pytest.fixture
def empty_database(settings):
    """A database of this test alone, with no table yet; dropped afterwards."""
    name = f"jobs_migrate_{uuid.uuid4().hex[:8]}"
    server = pymysql.connect(**{**connect_args(settings.mysql_url), "database": None})
    with server.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}`")
    yield settings.mysql_url.rsplit("/", 1)[0] + "/" + name
    with server, server.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")


def test_the_migrate_function_applies_every_migration_once_and_reports_the_version(settings, empty_database):
    # Given the function's runtime pointed at an empty database (as a first deploy finds it)
    runtime_module.use(Runtime(replace(settings, mysql_url=empty_database)))
    every = [path.name for _, path in pending(set())]

    # When the deploy invokes it twice
    with Client(app_module.app) as client:
        first = client.lambda_.invoke("migrate", {})
        second = client.lambda_.invoke("migrate", {})

    # Then the first run applies every migration in order, the second none, both naming the version
    newest = max(version for version, _ in pending(set()))
    assert first.payload == {"applied": every, "version": newest}
    assert second.payload == {"applied": [], "version": newest}
    conn = pymysql.connect(**connect_args(empty_database))
    with conn, conn.cursor() as cur:
        cur.execute("SELECT version, name FROM schema_migrations ORDER BY version")
        assert [name for _, name in cur.fetchall()] == every
        cur.execute("SHOW COLUMNS FROM jobs")
        assert {"checkpoint", "lease_token", "deaths"} <= {row[0] for row in cur.fetchall()}


def test_a_failing_migration_is_not_recorded_and_the_next_run_applies_it(
    settings, empty_database, tmp_path, monkeypatch
):
    # Given a migration whose second statement fails
    for path in schema.MIGRATIONS.iterdir():
        (tmp_path / path.name).write_text(path.read_text())
    broken = tmp_path / "999_broken.sql"
    broken.write_text("CREATE TABLE probe_a (id INT);\nALTER TABLE no_such_table ADD COLUMN x INT;\n")
    monkeypatch.setattr(schema, "MIGRATIONS", tmp_path)
    runtime = Runtime(replace(settings, mysql_url=empty_database))

    # When it runs, fails, is fixed and runs again
    with pytest.raises(pymysql.err.ProgrammingError):
        runtime.migrate()
    broken.write_text("CREATE TABLE IF NOT EXISTS probe_a (id INT);\nALTER TABLE probe_a ADD COLUMN x INT;\n")
    report = runtime.migrate()

    # Then only the fixed run recorded it
    assert report == {"applied": ["999_broken.sql"], "version": 999}
