"""A schedule's cron expression in its IANA time zone: validation and occurrences (cronsim, zoneinfo).

Only 5-field expressions (minute hour day-of-month month day-of-week) are accepted: a schedule fires
at most once a minute, and cronsim's 6-field form (seconds first) is refused for that reason.

Daylight saving time follows cronsim, which mimics Debian's cron (tests/test_schedules.py proves
each case in Europe/Berlin):

- an expression with a fixed minute and hour (`30 2 * * *`) whose time is skipped by a spring
  change runs once at the first moment after the gap (03:00 CEST on the last Sunday of March);
  one whose time happens twice in autumn runs once, at the first (02:30 CEST, not 02:30 CET);
- an expression whose minute or hour starts with `*` (`*/30 * * * *`) follows real time: the skipped
  hour has no occurrences and the repeated hour has them twice.

Occurrences are instants in UTC: `next_after` is strictly after its argument, so a schedule made
during a repeated hour never gets an occurrence that has already passed (cronsim alone would give
the first 02:30 to an iteration started in the second 02:xx).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError

from . import errors
from .schedule_store import MAX_CRON_CHARS, MAX_ZONE_CHARS

#: How many of cronsim's results may lie at or before the start (its repeated-hour quirk) before
#: an expression is taken to have no next occurrence: more than an hour of minutes.
_MAX_STALE = 100
#: The latest occurrence before a moment is searched in windows this far back, widening (seconds).
_WINDOWS = (3600, 86400, 32 * 86400, 367 * 86400)


def zone(name: object) -> ZoneInfo:
    """The IANA time zone of that name, or a 400 naming it."""
    if isinstance(name, str) and 0 < len(name) <= MAX_ZONE_CHARS:
        try:
            return ZoneInfo(name)
        except (KeyError, ValueError, OSError):  # ZoneInfoNotFoundError is a KeyError; paths are ValueErrors
            pass
    shown = repr(name)[:80]
    raise errors.InvalidRequest(f"timezone {shown} is not an IANA time zone name (e.g. Europe/Berlin, UTC)")


@dataclass(frozen=True)
class Cron:
    """A checked 5-field expression and its zone; occurrences in UTC."""

    expression: str
    zone: ZoneInfo

    @classmethod
    def parse(cls, expression: object, timezone: object, *, now: datetime) -> Cron:
        """The schedule's cron, or a 400 naming what is wrong: not 5 fields, a bad field, an unknown
        zone, or an expression that never fires."""
        tz = zone(timezone)
        if not isinstance(expression, str) or not 0 < len(expression) <= MAX_CRON_CHARS:
            raise errors.InvalidRequest(f"cron must be a string of 1 to {MAX_CRON_CHARS} characters")
        shown = expression[:80]
        fields = expression.split()
        if len(fields) == 6:
            raise errors.InvalidRequest(
                f"cron {shown!r} has a seconds field: schedules fire at most once a minute, so cron takes"
                " 5 fields (minute hour day-of-month month day-of-week)"
            )
        if len(fields) != 5:
            raise errors.InvalidRequest(
                f"cron {shown!r} must have 5 fields (minute hour day-of-month month day-of-week), not {len(fields)}"
            )
        try:
            CronSim(expression, now.astimezone(tz))
        except CronSimError as exc:
            raise errors.InvalidRequest(f"cron {shown!r} is not a valid expression: {exc}") from None
        cron = cls(" ".join(fields), tz)
        if cron.next_after(now) is None:
            raise errors.InvalidRequest(f"cron {shown!r} never fires")
        return cron

    @property
    def timezone(self) -> str:
        return self.zone.key

    def next_after(self, moment: datetime) -> datetime | None:
        """The first occurrence strictly after `moment` (aware), in UTC; None if there is none in
        cronsim's horizon (50 years)."""
        moment = moment.astimezone(UTC)
        stale = 0
        for occurrence in CronSim(self.expression, moment.astimezone(self.zone)):
            at = occurrence.astimezone(UTC)
            if at > moment:
                return at
            stale += 1
            if stale > _MAX_STALE:
                break
        return None

    def latest_until(self, moment: datetime, *, not_before: datetime) -> datetime:
        """The latest occurrence in [not_before, moment], `not_before` being an occurrence at or before
        `moment`: what runs once after a pause or an outage.

        Searched forward from a window before `moment` (an hour, a day, a month, a year, then from
        `not_before`), so a minutely schedule paused for a month costs about 60 steps, not 43,200.
        """
        floor = not_before - timedelta(seconds=1)
        for window in (*_WINDOWS, None):
            start = floor if window is None else max(floor, moment - timedelta(seconds=window))
            found = self.next_after(start)
            if found is not None and found <= moment:
                while (following := self.next_after(found)) is not None and following <= moment:
                    found = following
                return found
            if start == floor:
                break
        return not_before
