"""The schema is the project's versioned migration, applied by a command."""

import subprocess
import sys
from pathlib import Path

from chalicelib.schema import migrate


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
