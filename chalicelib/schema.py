"""Versioned SQL migrations: `python -m chalicelib.schema` applies the ones not yet applied.

Each file in migrations/ is `NNN_name.sql`; the `schema_migrations` table records what ran. DDL is
not transactional in MySQL, so a migration is recorded only after all its statements succeeded.
Applying is idempotent: a second run applies nothing and reports the same version. On AWS the
`migrate` function (app.py) runs `apply` inside the VPC, and `make deploy` invokes it (infra/deploy.py).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pymysql

from .config import Settings
from .store import connect_args

MIGRATIONS = Path(__file__).with_name("migrations")
_FILE = re.compile(r"(\d{3})_[a-z0-9_]+\.sql")


def _statements(sql: str) -> list[str]:
    """Split a migration into statements at semicolons that end a line."""
    body = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in re.split(r";\s*$", body, flags=re.M) if s.strip()]


def pending(applied: set[int]) -> list[tuple[int, Path]]:
    """Migration files not yet applied, in version order."""
    found = sorted((int(m.group(1)), p) for p in MIGRATIONS.iterdir() if (m := _FILE.fullmatch(p.name)))
    return [(version, path) for version, path in found if version not in applied]


def migrate(url: str, *, create_database: bool = False) -> list[str]:
    """Apply pending migrations to the database of `url`; returns the names applied."""
    args = connect_args(url)
    if create_database:
        server = pymysql.connect(**{**args, "database": None})
        with server, server.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS `{args['database']}` CHARACTER SET utf8mb4")
    return apply(lambda: pymysql.connect(**args))["applied"]


def apply(connect: Callable[[], pymysql.connections.Connection]) -> dict[str, Any]:
    """Apply pending migrations over a connection from `connect`: `{"applied": [names], "version": N}`,
    N the newest version now applied (0 for none)."""
    done = []
    with connect() as conn, conn.cursor(pymysql.cursors.Cursor) as cur:
        cur.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INT UNSIGNED NOT NULL PRIMARY KEY, name VARCHAR(255) NOT NULL,"
            " applied_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3))"
        )
        cur.execute("SELECT version FROM schema_migrations")
        applied = {row[0] for row in cur.fetchall()}
        for version, path in pending(applied):
            for statement in _statements(path.read_text()):
                cur.execute(statement)
            cur.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, path.name))
            conn.commit()
            applied.add(version)
            done.append(path.name)
    return {"applied": done, "version": max(applied, default=0)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="MySQL URL (default: MYSQL_URL or the local default)")
    parser.add_argument("--create-database", action="store_true", help="create the database if missing")
    ns = parser.parse_args(argv)
    applied = migrate(ns.url or Settings.from_env().mysql_url, create_database=ns.create_database)
    print("applied: " + (", ".join(applied) if applied else "nothing, the schema is current"))


if __name__ == "__main__":
    main()
