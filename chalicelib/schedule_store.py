"""MySQL rows of the `schedules` table (migrations/010_schedules.sql): the only module that speaks SQL
to schedules, over the job store's connection (`JobStore.execute`).

As in store.py every write is guarded and tells the caller whether it won: a client's change
(`update`) is guarded by the `updated_at` it read, so two PATCHes or a PATCH and the sweeper never
undo each other silently; the sweeper's `advance` by the `next_run_at` it read, so of two sweepers
at once only one moves a schedule on.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from .models import as_utc

_COLUMNS = (
    "id, owner, cron, timezone, job, overlap, paused, next_run_at, paused_at, generation, last_run_at, last_job_id,"
    " skipped, last_skipped_at, last_skip_reason, created_at, updated_at"
)
#: Columns `update` may set; names are never taken from input.
_SETTABLE = {"cron", "timezone", "job", "overlap", "paused", "next_run_at", "paused_at", "generation"}
#: The widths of the `cron`, `timezone` and `last_skip_reason` columns.
MAX_CRON_CHARS, MAX_ZONE_CHARS, MAX_REASON_CHARS = 255, 64, 255
#: The zone of a schedule created without one.
DEFAULT_TIMEZONE = "UTC"

Execute = Callable[[str, Iterable[Any]], tuple[int, list[dict[str, Any]]]]


class Overlap(str, Enum):
    """What an occurrence does while the schedule's previous job is still active."""

    #: The occurrence is skipped and recorded (`skipped`, `lastSkippedAt`): the default.
    SKIP = "skip"
    #: The occurrence's job is made anyway; the two run side by side.
    ALLOW = "allow"


@dataclass(frozen=True)
class Schedule:
    """One row of the `schedules` table."""

    id: str
    owner: str
    cron: str
    timezone: str
    #: The job template as the client gave it (type, payload, maxAttempts, ...).
    job: dict[str, Any]
    overlap: Overlap
    created_at: datetime
    updated_at: datetime
    paused: bool = False
    #: The next occurrence the sweeper makes a job for; None while paused.
    next_run_at: datetime | None = None
    paused_at: datetime | None = None
    #: Part of each occurrence's job key; one more at each pause, resume or change of cron or zone.
    generation: int = 0
    last_run_at: datetime | None = None
    last_job_id: str | None = None
    skipped: int = 0
    last_skipped_at: datetime | None = None
    last_skip_reason: str | None = None


def _aware(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


def _schedule(row: dict[str, Any]) -> Schedule:
    job = row["job"]
    return Schedule(
        id=row["id"],
        owner=row["owner"],
        cron=row["cron"],
        timezone=row["timezone"],
        job=json.loads(job) if isinstance(job, (str, bytes)) else job,
        overlap=Overlap(row["overlap"]),
        paused=bool(row["paused"]),
        next_run_at=_aware(row["next_run_at"]),
        paused_at=_aware(row["paused_at"]),
        generation=row["generation"],
        last_run_at=_aware(row["last_run_at"]),
        last_job_id=row["last_job_id"],
        skipped=row["skipped"],
        last_skipped_at=_aware(row["last_skipped_at"]),
        last_skip_reason=row["last_skip_reason"],
        created_at=as_utc(row["created_at"]),
        updated_at=as_utc(row["updated_at"]),
    )


def _value(name: str, value: Any) -> Any:
    if name == "job":
        return json.dumps(value, separators=(",", ":"))
    return value.value if isinstance(value, Enum) else value


class ScheduleStore:
    """Rows of the `schedules` table, through one statement runner (the job store's connection)."""

    def __init__(self, execute: Execute):
        self._execute = execute

    # --- the client's schedules ------------------------------------------------------------------
    def insert(self, schedule: Schedule) -> None:
        """Store a new schedule."""
        s = schedule
        self._execute(
            f"INSERT INTO schedules ({_COLUMNS}) VALUES ({', '.join(['%s'] * 17)})",
            (
                s.id,
                s.owner,
                s.cron,
                s.timezone,
                _value("job", s.job),
                s.overlap.value,
                s.paused,
                s.next_run_at,
                s.paused_at,
                s.generation,
                s.last_run_at,
                s.last_job_id,
                s.skipped,
                s.last_skipped_at,
                s.last_skip_reason,
                s.created_at,
                s.updated_at,
            ),
        )

    def count(self, owner: str) -> int:
        """How many schedules the owner has (one range of ix_schedules_owner)."""
        _, rows = self._execute("SELECT COUNT(*) AS n FROM schedules WHERE owner = %s", (owner,))
        return int(rows[0]["n"])

    def get(self, schedule_id: str, *, owner: str) -> Schedule | None:
        """The owner's schedule with that id, or None (another owner's is None too)."""
        _, rows = self._execute(f"SELECT {_COLUMNS} FROM schedules WHERE id = %s AND owner = %s", (schedule_id, owner))
        return _schedule(rows[0]) if rows else None

    def list_schedules(self, owner: str, *, limit: int, before_id: str | None = None) -> list[Schedule]:
        """The owner's schedules, newest first, starting after `before_id` (keyset pagination)."""
        where, args = "owner = %s", [owner]
        if before_id is not None:
            where += " AND id < %s"
            args.append(before_id)
        _, rows = self._execute(
            f"SELECT {_COLUMNS} FROM schedules WHERE {where} ORDER BY id DESC LIMIT %s", (*args, limit)
        )
        return [_schedule(row) for row in rows]

    def update(self, schedule_id: str, *, owner: str, read_at: datetime, at: datetime, **columns: Any) -> bool:
        """Set `columns` of the owner's schedule if it is still as read (`updated_at = read_at`); True if
        this call changed it."""
        unknown = set(columns) - _SETTABLE
        if unknown:
            raise ValueError(f"not settable: {sorted(unknown)}")
        sets = [f"{name} = %s" for name in columns] + ["updated_at = %s"]
        changed, _ = self._execute(
            f"UPDATE schedules SET {', '.join(sets)} WHERE id = %s AND owner = %s AND updated_at = %s",
            (*(_value(n, v) for n, v in columns.items()), at, schedule_id, owner, read_at),
        )
        return changed == 1

    def delete(self, schedule_id: str, *, owner: str) -> bool:
        """Delete the owner's schedule; True if this call did."""
        changed, _ = self._execute("DELETE FROM schedules WHERE id = %s AND owner = %s", (schedule_id, owner))
        return changed == 1

    # --- the sweeper -----------------------------------------------------------------------------
    def due(self, *, before: datetime, limit: int) -> list[Schedule]:
        """Unpaused schedules whose next occurrence is at or before `before`, soonest first: one range
        of ix_schedules_next_run, at most `limit` rows."""
        _, rows = self._execute(
            f"SELECT {_COLUMNS} FROM schedules WHERE next_run_at <= %s ORDER BY next_run_at LIMIT %s",
            (before, limit),
        )
        return [_schedule(row) for row in rows]

    def advance(
        self,
        schedule_id: str,
        *,
        from_next: datetime,
        next_run_at: datetime | None,
        at: datetime,
        ran: tuple[datetime, str] | None = None,
        skip_reason: str | None = None,
    ) -> bool:
        """Move the schedule on to `next_run_at` if its next occurrence is still `from_next`, recording
        the occurrence's job (`ran`: its time and job id) or why it was skipped; True if this call did."""
        sets = ["next_run_at = %s", "updated_at = %s"]
        args: list[Any] = [next_run_at, at]
        if ran is not None:
            sets += ["last_run_at = %s", "last_job_id = %s"]
            args += list(ran)
        if skip_reason is not None:
            sets += ["skipped = skipped + 1", "last_skipped_at = %s", "last_skip_reason = %s"]
            args += [at, skip_reason[:MAX_REASON_CHARS]]
        changed, _ = self._execute(
            f"UPDATE schedules SET {', '.join(sets)} WHERE id = %s AND next_run_at = %s",
            (*args, schedule_id, from_next),
        )
        return changed == 1
