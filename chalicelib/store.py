"""MySQL rows with PyMySQL: the source of truth. The only module that speaks SQL to the jobs table.

Every write to a job is a guarded UPDATE with a name that tells the caller whether it won:
`transition` (a status change), `start` (PENDING -> RUNNING), `claim` (taking over a RUNNING job)
and `save_checkpoint` (a holder's durable checkpoint), so a late or duplicate worker can never
resurrect a finished job. The column `lease_token` is the fence: the token of the worker that last
started or claimed the job; a holder's writes carry `fenced_by=<its token>` and win only while it
is still the fence. (The lease itself, the worker's timed hold, lives in Redis: hotstate.py.)
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pymysql
from pymysql.constants import CLIENT, ER

from . import errors
from .models import TERMINAL, CallbackState, Job, JobStatus, Priority, utcnow

# Connection-level failures after which a fresh connection may succeed: can't connect (2003),
# server has gone away (2006), lost connection during query (2013), lost connection (2055).
_RECONNECT_CODES = {2003, 2006, 2013, 2055}
#: A statement whose arguments are shorter than this is never measured against max_allowed_packet
#: (1 MiB; the server default is 16 MiB on MariaDB 10.11 and 64 MiB on MySQL 8 and RDS).
_MEASURED_FROM_BYTES = 1024 * 1024

_COLUMNS = (
    "id, owner, batch_id, depends_on, run_on_failure, type, status, payload, result, result_bytes, result_key,"
    " error, progress, progress_detail, message, attempts, max_attempts, timeout_seconds, run_at, priority,"
    " cancel_requested, held, created_at, started_at, finished_at, updated_at, callback_url, previous_error"
)
#: Columns `transition` may set besides status; names are never taken from input.
_SETTABLE = {
    *("result", "result_bytes", "result_key", "error", "progress", "progress_detail", "message"),
    *("finished_at", "updated_at", "held", "callback_due_at", "checkpoint", "checkpoint_seq"),
}
_JSON_COLUMNS = {"payload", "result", "progress_detail", "checkpoint", "depends_on"}
CALLBACK_WAITING = CallbackState.WAITING.value
_OPEN_CALLBACK = (CallbackState.WAITING.value, CallbackState.QUEUED.value)


def connect_args(url: str, *, tls: bool = False, tls_ca: str | None = None) -> dict[str, Any]:
    """PyMySQL connect() arguments from `mysql://user:password@host:port/database`.

    With `tls`, the connection is encrypted and the server's certificate and host name verified
    against `tls_ca` (for RDS: its CA bundle) or the system's CAs.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("mysql", "mariadb"):
        raise ValueError(f"MYSQL_URL must start with mysql://, got {parts.scheme}://")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    extra = {"ssl": ssl.create_default_context(cafile=tls_ca)} if tls else {}
    return {
        **extra,
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 3306,
        "user": unquote(parts.username or "root"),
        "password": unquote(parts.password or ""),
        "database": parts.path.lstrip("/") or "jobs",
        "charset": "utf8mb4",
        "autocommit": True,
        "connect_timeout": int(query.get("connect_timeout", 5)),
        "read_timeout": int(query.get("read_timeout", 15)),
        "write_timeout": int(query.get("write_timeout", 15)),
    }


class EncodedJson(str):
    """JSON text its caller already encoded (to measure it): stored as it is, not encoded again."""


def _dump(value: Any) -> str | None:
    if value is None or isinstance(value, EncodedJson):
        return value
    return json.dumps(value, separators=(",", ":"))


def _load(value: Any) -> Any:
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def _marks(values: Sequence[Any]) -> str:
    """The placeholders of an IN list of these values."""
    return ", ".join(["%s"] * len(values))


def _job(row: dict[str, Any]) -> Job:
    return Job(
        id=row["id"],
        owner=row["owner"],
        batch_id=row.get("batch_id"),
        depends_on=_load(row.get("depends_on")),
        run_on_failure=bool(row.get("run_on_failure")),
        type=row["type"],
        status=JobStatus(row["status"]),
        payload=_load(row["payload"]),
        result=_load(row["result"]),
        result_bytes=row["result_bytes"],
        result_key=row["result_key"],
        error=row["error"],
        previous_error=row.get("previous_error"),
        progress=row["progress"],
        progress_detail=_load(row["progress_detail"]),
        message=row["message"],
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        timeout_seconds=row["timeout_seconds"],
        cancel_requested=bool(row["cancel_requested"]),
        held=bool(row.get("held")),
        run_at=row.get("run_at"),
        priority=Priority(row.get("priority") or Priority.NORMAL),
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        updated_at=row["updated_at"],
        callback_url=row.get("callback_url"),
        checkpoint=_load(row.get("checkpoint")),
        lease_token=row.get("lease_token"),
        deaths=row.get("deaths") or 0,
        death_chunk=row.get("death_chunk"),
    )


_INSERT_COLUMNS = (
    "id, owner, batch_id, depends_on, run_on_failure, type, status, payload, max_attempts, timeout_seconds, run_at,"
    " priority, sent, idempotency_key, request_hash, created_at, updated_at, callback_url, callback_state"
)
_INSERT_ROW = "(" + ", ".join(["%s"] * len(_INSERT_COLUMNS.split(","))) + ")"


def _insert_jobs(rows: Sequence[tuple[Job, bool, str | None, str | None]]) -> tuple[str, list[Any]]:
    """One INSERT of these (job, sent, idempotency key, request hash) rows."""
    args: list[Any] = []
    for job, sent, idempotency_key, request_hash in rows:
        args += (
            job.id,
            job.owner,
            job.batch_id,
            _dump(job.depends_on),
            job.run_on_failure,
            job.type,
            job.status.value,
            _dump(job.payload),
            job.max_attempts,
            job.timeout_seconds,
            job.run_at,
            job.priority.value,
            sent,
            idempotency_key,
            request_hash,
            job.created_at,
            job.created_at,
            job.callback_url,
            None if job.callback_url is None else CALLBACK_WAITING,
        )
    return f"INSERT INTO jobs ({_INSERT_COLUMNS}) VALUES {', '.join([_INSERT_ROW] * len(rows))}", args


def _insert_dependencies(pairs: Sequence[tuple[str, str]]) -> tuple[str, list[Any]]:
    """One INSERT of these (waiter, dependency) rows."""
    return (
        f"INSERT INTO job_dependencies (job_id, depends_on) VALUES {', '.join(['(%s, %s)'] * len(pairs))}",
        [part for pair in pairs for part in pair],
    )


@dataclass(frozen=True)
class DependencyState:
    """A WAITING job's dependencies as MySQL has them now: how many, how many have not ended, and
    one that ended without completing (its id and status), if any."""

    status: JobStatus
    run_on_failure: bool
    total: int
    active: int
    failed: tuple[str, JobStatus] | None


@dataclass(frozen=True)
class Batch:
    """One row of the `batches` table."""

    id: str
    owner: str
    job_count: int
    then_job_id: str | None
    then_on_failure: str
    created_at: Any
    cancelled: bool = False
    callback_url: str | None = None


@dataclass(frozen=True)
class ActiveCounts:
    """An owner's unfinished jobs by status, and how many of its PENDING ones are held."""

    by_status: dict[JobStatus, int]
    held: int = 0

    @property
    def total(self) -> int:
        return sum(self.by_status.values())

    @property
    def unheld(self) -> int:
        """Its jobs queued (PENDING, not held) or running: what its running cap is measured against."""
        return self.by_status.get(JobStatus.PENDING, 0) - self.held + self.by_status.get(JobStatus.RUNNING, 0)


class JobStore:
    """Rows of the `jobs` table, over one connection per thread reused across invocations.

    A Lambda container has one thread, so one connection; the local server's threads get one each
    (a PyMySQL connection must never be shared between threads).
    """

    def __init__(self, connect: Callable[[], pymysql.connections.Connection]):
        self._connect = connect
        self._local = threading.local()

    @property
    def _conn(self) -> pymysql.connections.Connection | None:
        return getattr(self._local, "conn", None)

    @_conn.setter
    def _conn(self, conn: pymysql.connections.Connection | None) -> None:
        self._local.conn = conn

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        tls: bool = False,
        tls_ca: str | None = None,
        credentials: Callable[[], tuple[str, str]] | None = None,
    ) -> JobStore:
        """A store for MYSQL_URL; `credentials` (user, password), when given, replace the URL's."""
        args = connect_args(url, tls=tls, tls_ca=tls_ca)

        def connect() -> pymysql.connections.Connection:
            login = {}
            if credentials is not None:
                login["user"], login["password"] = credentials()
            # FOUND_ROWS: an UPDATE reports the rows it matched, so repeating a cancel still counts.
            return pymysql.connect(
                cursorclass=pymysql.cursors.DictCursor, client_flag=CLIENT.FOUND_ROWS, **{**args, **login}
            )

        return cls(connect)

    # --- connection ------------------------------------------------------------------------------
    def connection(self) -> pymysql.connections.Connection:
        """A new connection made as the store's are (TLS, credentials), for work beside it: migrations."""
        return self._connect()

    def _execute(self, sql: str, args: Iterable[Any] = ()) -> tuple[int, list[dict[str, Any]]]:
        """Run one statement; returns (rows affected, rows fetched).

        A dropped connection (a Lambda container thawed after the server closed it, a failover)
        is replaced once and the statement retried. Every statement here is safe to repeat; a
        guarded UPDATE whose first reply was lost reports False on the retry, and callers that
        care re-read the row.
        """
        args = tuple(args)
        for attempt in (1, 2):
            try:
                if self._conn is None:
                    self._conn = self._connect()
                with self._conn.cursor(pymysql.cursors.DictCursor) as cur:
                    self._run(cur, sql, args)
                    return cur.rowcount, list(cur.fetchall())
            except pymysql.IntegrityError:
                raise
            except (pymysql.OperationalError, pymysql.InterfaceError) as exc:
                self._failed(exc, sql, last_try=attempt == 2)
        raise AssertionError("unreachable")

    def _transaction(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """Run the statements in one transaction: all are committed or none. Retried once on a fresh
        connection after a drop, as `_execute` is; a commit whose reply was lost meets its own rows
        on the retry (an IntegrityError for the caller, as a retried INSERT does)."""
        for attempt in (1, 2):
            try:
                if self._conn is None:
                    self._conn = self._connect()
                conn = self._conn
                conn.begin()
                try:
                    with conn.cursor(pymysql.cursors.DictCursor) as cur:
                        for sql, args in statements:
                            self._run(cur, sql, tuple(args))
                    conn.commit()
                    return
                except BaseException:
                    try:
                        conn.rollback()
                    except Exception:  # the connection is gone: the server rolled back
                        pass
                    raise
            except pymysql.IntegrityError:
                raise
            except (pymysql.OperationalError, pymysql.InterfaceError) as exc:
                self._failed(exc, statements[0][0], last_try=attempt == 2)
        raise AssertionError("unreachable")

    def _run(self, cur: pymysql.cursors.DictCursor, sql: str, args: tuple[Any, ...]) -> None:
        if sum(len(a) for a in args if isinstance(a, (str, bytes))) > _MEASURED_FROM_BYTES:
            self._refuse_oversized(cur, sql, args)
        cur.execute(sql, args)

    def _failed(self, exc: Exception, sql: str, *, last_try: bool) -> None:
        """After a connection-level error: drop the connection, and raise unless a retry may help."""
        self.close()
        code = exc.args[0] if exc.args else 0
        if code == ER.NET_PACKET_TOO_LARGE:  # a server whose limit is under _MEASURED_FROM_BYTES
            raise errors.ValueTooLarge(
                "a statement is over MySQL's max_allowed_packet", size=len(sql), limit=0
            ) from exc
        if last_try or not (isinstance(exc, pymysql.InterfaceError) or code in _RECONNECT_CODES):
            raise errors.StoreUnavailable(f"MySQL: {exc}") from exc

    def _refuse_oversized(self, cur: pymysql.cursors.DictCursor, sql: str, args: tuple[Any, ...]) -> None:
        """Raise ValueTooLarge, without sending it, for a statement over the server's max_allowed_packet.

        The server answers one with error 1153 or, far over, by closing the connection (2006 "gone
        away"): indistinguishable from an outage, so it would be waited out for ever. The limit is read
        once per thread (one round trip), and only when a statement of _MEASURED_FROM_BYTES or more comes.
        """
        limit = getattr(self._local, "max_packet", None)
        if limit is None:
            cur.execute("SELECT @@max_allowed_packet AS limit_bytes")
            row = cur.fetchone()
            assert row is not None  # a SELECT of a variable always has its row
            limit = self._local.max_packet = int(row["limit_bytes"])
        size = len(cur.mogrify(sql, args).encode("utf-8")) + 1  # the command byte
        if size > limit:
            raise errors.ValueTooLarge(
                f"a statement of {size} bytes is over MySQL's max_allowed_packet of {limit}", size=size, limit=limit
            )

    def close(self) -> None:
        """Drop the connection; the next statement opens a new one."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # already broken: nothing left to close
                pass

    def ping(self) -> None:
        """One cheap round trip, for health checks."""
        self._execute("SELECT 1")

    def execute(self, sql: str, args: Iterable[Any] = ()) -> tuple[int, list[dict[str, Any]]]:
        """One statement of another table's store over this connection (schedule_store.py): the same
        reconnect and size rules; (rows affected, rows fetched)."""
        return self._execute(sql, args)

    # --- jobs ------------------------------------------------------------------------------------
    def insert_job(
        self,
        job: Job,
        *,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
        sent: bool = True,
        dependencies: Sequence[str] = (),
    ) -> Job:
        """Store a new PENDING (SCHEDULED, WAITING) job; with an idempotency key, return the job it
        already made instead. `sent` FALSE: no message goes out now (a job scheduled past SQS's delay,
        a waiting one). A job's `dependencies` are stored with it, in the same transaction.

        Raises IdempotencyKeyReused when the key was used by this owner with another request.
        """
        insert = _insert_jobs([(job, sent, idempotency_key, request_hash)])
        try:
            if dependencies:
                self._transaction([insert, _insert_dependencies([(job.id, dep) for dep in dependencies])])
            else:
                self._execute(*insert)
            return job
        except pymysql.IntegrityError as exc:
            if exc.args[0] != ER.DUP_ENTRY:
                raise errors.StoreUnavailable(f"MySQL: {exc}") from exc
        # A retried INSERT whose first try did commit finds its own row by primary key.
        if idempotency_key is None:
            existing, existing_hash = self.get_job(job.id), request_hash
        else:
            existing, existing_hash = self._get_by_key(job.owner, idempotency_key)
        if existing is None:
            raise errors.StoreUnavailable("MySQL: duplicate key but no row")
        if existing_hash != request_hash:
            raise errors.IdempotencyKeyReused(
                "this Idempotency-Key was already used with a different request", jobId=existing.id
            )
        return existing

    def _get_by_key(self, owner: str, idempotency_key: str) -> tuple[Job | None, str | None]:
        _, rows = self._execute(
            f"SELECT {_COLUMNS}, request_hash FROM jobs WHERE owner = %s AND idempotency_key = %s",
            (owner, idempotency_key),
        )
        return (_job(rows[0]), rows[0]["request_hash"]) if rows else (None, None)

    def get_job(self, job_id: str, *, owner: str | None = None, with_checkpoint: bool = False) -> Job | None:
        """The job with that id (and owner, when given), or None; the worker asks for the checkpoint,
        lease token and deaths too."""
        columns = _COLUMNS + (", checkpoint, lease_token, deaths, death_chunk" if with_checkpoint else "")
        sql = f"SELECT {columns} FROM jobs WHERE id = %s"
        args: list[Any] = [job_id]
        if owner is not None:
            sql += " AND owner = %s"
            args.append(owner)
        _, rows = self._execute(sql, args)
        return _job(rows[0]) if rows else None

    def get_jobs(self, job_ids: Sequence[str], *, owner: str) -> list[Job]:
        """The owner's jobs among these ids, in one statement (ids of no job or of another owner's
        are left out)."""
        if not job_ids:
            return []
        _, rows = self._execute(
            f"SELECT {_COLUMNS} FROM jobs WHERE owner = %s AND id IN ({', '.join(['%s'] * len(job_ids))})",
            [owner, *job_ids],
        )
        return [_job(row) for row in rows]

    def list_jobs(
        self,
        owner: str,
        *,
        status: JobStatus | None = None,
        type: str | None = None,
        limit: int = 20,
        before_id: str | None = None,
    ) -> list[Job]:
        """The owner's jobs, newest first, starting after `before_id` (keyset pagination)."""
        where, args = ["owner = %s"], [owner]
        if status is not None:
            where.append("status = %s")
            args.append(status.value)
        return self._newest_first(where, args, type=type, before_id=before_id, limit=limit)

    def _newest_first(
        self, where: list[str], args: list[Any], *, type: str | None, before_id: str | None, limit: int
    ) -> list[Job]:
        """The jobs `where` says (and of `type`, and before `before_id`), newest first, at most `limit`."""
        if type is not None:
            where.append("type = %s")
            args.append(type)
        if before_id is not None:
            where.append("id < %s")
            args.append(before_id)
        _, rows = self._execute(
            f"SELECT {_COLUMNS} FROM jobs WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT %s", [*args, limit]
        )
        return [_job(row) for row in rows]

    def transition(
        self, job_id: str, *, from_: Iterable[JobStatus], to: JobStatus, fenced_by: str | None = None, **columns: Any
    ) -> bool:
        """Move the job to `to`, setting `columns`: `WHERE status IN from_` (and, given `fenced_by`,
        `AND lease_token = fenced_by`). True if this call made the change."""
        unknown = set(columns) - _SETTABLE
        if unknown:
            raise ValueError(f"not settable: {sorted(unknown)}")
        sets = ["status = %s"] + [f"{name} = %s" for name in columns]
        args: list[Any] = [to.value] + [_dump(v) if n in _JSON_COLUMNS else v for n, v in columns.items()]
        states = [s.value for s in from_]
        sql = f"UPDATE jobs SET {', '.join(sets)} WHERE id = %s AND status IN ({', '.join(['%s'] * len(states))})"
        args += [job_id, *states]
        if fenced_by is not None:
            sql += " AND lease_token = %s"
            args.append(fenced_by)
        changed, _ = self._execute(sql, args)
        return changed == 1

    def start(self, job_id: str, *, token: str, at, attempts: int | None = None) -> bool:
        """PENDING (or a due SCHEDULED) -> RUNNING with `token` as the fence and one more attempt; a
        held job is not started (holds.py). True if this call started the job (False: it moved on,
        e.g. was cancelled).

        With `attempts` (what a message said of the row, queue.carry), the row must also have that
        many attempts and no durable checkpoint: a start from a message behind the row misses.
        """
        guard, args = ("", ()) if attempts is None else (" AND attempts = %s AND checkpoint IS NULL", (attempts,))
        changed, _ = self._execute(
            "UPDATE jobs SET status = %s, attempts = attempts + 1, lease_token = %s, started_at = %s, updated_at = %s"
            f" WHERE id = %s AND status IN (%s, %s) AND NOT held{guard}",
            (JobStatus.RUNNING.value, token, at, at, job_id, JobStatus.PENDING.value, JobStatus.SCHEDULED.value, *args),
        )
        return changed == 1

    def claim(self, job_id: str, *, token: str, at, chunk: int = 1) -> bool:
        """Make `token` the fence of a RUNNING job whose holder's lease expired: `WHERE status = RUNNING`.
        True if the job is still RUNNING; from now on the previous holder's fenced writes miss.

        The same UPDATE counts the previous holder's death at `chunk` (the chunk it was running):
        one more if the last death was at that chunk too, else the count starts again at 1.
        """
        # MySQL and MariaDB assign left to right: `deaths` still compares the old `death_chunk`.
        changed, _ = self._execute(
            "UPDATE jobs SET lease_token = %s, deaths = IF(death_chunk <=> %s, deaths + 1, 1), death_chunk = %s,"
            " updated_at = %s WHERE id = %s AND status = %s",
            (token, chunk, chunk, at, job_id, JobStatus.RUNNING.value),
        )
        return changed == 1

    def save_checkpoint(
        self,
        job_id: str,
        *,
        fenced_by: str,
        checkpoint: Any,
        checkpoint_seq: int,
        progress: int,
        progress_detail: dict[str, Any] | None,
        message: str | None,
        at,
        retry_error: str | None = None,
    ) -> bool:
        """Store a holder's durable checkpoint and progress: `WHERE status = RUNNING AND lease_token =
        fenced_by`. With `retry_error`, also count the next attempt and keep the error of the one that
        failed (a retry). True if written; False if the job was taken over or has ended."""
        retry = ", attempts = attempts + 1, error = %s" if retry_error is not None else ""
        changed, _ = self._execute(
            "UPDATE jobs SET checkpoint = %s, checkpoint_seq = %s, progress = %s, progress_detail = %s, message = %s,"
            f" updated_at = %s{retry} WHERE id = %s AND status = %s AND lease_token = %s",
            (
                _dump(checkpoint),
                checkpoint_seq,
                progress,
                _dump(progress_detail),
                message,
                at,
                *(() if retry_error is None else (retry_error,)),
                job_id,
                JobStatus.RUNNING.value,
                fenced_by,
            ),
        )
        return changed == 1

    def request_cancel(self, job_id: str, *, owner: str, at) -> bool:
        """Raise the durable cancel flag of a RUNNING job; True if the job is RUNNING."""
        changed, _ = self._execute(
            "UPDATE jobs SET cancel_requested = TRUE, updated_at = %s WHERE id = %s AND owner = %s AND status = %s",
            (at, job_id, owner, JobStatus.RUNNING.value),
        )
        return changed == 1

    # --- retry and bulk cancel (rerun.py, bulk.py) -------------------------------------------------
    def claim_retry(self, job_id: str, *, owner: str, status: JobStatus) -> bool:
        """A retry's first step where the owner has a plan: FAILED or CANCELLED -> `status`, unheld,
        and nothing else, so that the retry is counted with the owner's unfinished jobs before it
        changes the row (`WHERE status IN (FAILED, CANCELLED)`: of two retries at once one wins).
        True if this call made the change; `unclaim_retry` undoes it exactly."""
        changed, _ = self._execute(
            "UPDATE jobs SET status = %s, held = FALSE WHERE id = %s AND owner = %s AND status IN (%s, %s)",
            (status.value, job_id, owner, JobStatus.FAILED.value, JobStatus.CANCELLED.value),
        )
        return changed == 1

    def unclaim_retry(self, job: Job, *, claimed: JobStatus) -> None:
        """Put back the status (and `held`) `claim_retry` changed: the retry was refused."""
        self._execute(
            "UPDATE jobs SET status = %s, held = %s WHERE id = %s AND status = %s",
            (job.status.value, job.held, job.id, claimed.value),
        )

    def retry(
        self,
        job_id: str,
        *,
        owner: str,
        from_start: bool,
        at,
        message: str,
        status: JobStatus = JobStatus.PENDING,
        claimed: bool = False,
    ) -> bool:
        """FAILED or CANCELLED (or, `claimed`, the status `claim_retry` gave it) -> PENDING, or WAITING
        for a job whose dependencies have not all ended (unsent, as at its insert), under the same id,
        guarded by that status, so of two retries at once one wins. True if this call made the change.

        The run starts over, now, as a fresh job would (no runAt, attempts, fence, deaths, cancel flag,
        result, end or webhook attempts; a callback WAITING for the new end), its error moved to `previous_error`
        (a cancel's empty error keeps the one before). The durable checkpoint stays, so the worker
        resumes from it as from a hand-off's, unless `from_start` discards it with the progress.
        """
        restart = ", checkpoint = NULL, checkpoint_seq = 0, progress = 0, progress_detail = NULL" if from_start else ""
        # MySQL and MariaDB assign left to right: previous_error takes the error before it is cleared.
        changed, _ = self._execute(
            "UPDATE jobs SET status = %s, previous_error = COALESCE(error, previous_error), error = NULL,"
            " attempts = 0, cancel_requested = FALSE, result = NULL, result_bytes = NULL, result_key = NULL,"
            " run_at = NULL, started_at = NULL, finished_at = NULL, updated_at = %s, message = %s, lease_token = NULL,"
            " deaths = 0, death_chunk = NULL, held = FALSE, sent = %s, deliveries = NULL, callback_due_at = NULL,"
            f" callback_state = IF(callback_url IS NULL, NULL, %s){restart}"
            " WHERE id = %s AND owner = %s AND status IN (%s, %s)",
            (
                status.value,
                at,
                message,
                status is JobStatus.PENDING,
                CALLBACK_WAITING,
                job_id,
                owner,
                *((status.value,) * 2 if claimed else (JobStatus.FAILED.value, JobStatus.CANCELLED.value)),
            ),
        )
        return changed == 1

    def cancellable(
        self,
        owner: str,
        *,
        statuses: Sequence[JobStatus],
        type: str | None,
        limit: int,
        before_id: str | None,
        batch_id: str | None = None,
    ) -> list[Job]:
        """The owner's jobs in `statuses` (of `type`, of the batch) that a cancel would change, newest
        first from `before_id`: RUNNING ones only until their cancel is requested. One statement
        (ix_jobs_owner_status, ix_jobs_owner_type with a type, ix_jobs_batch_status with a batch)."""
        where = [f"owner = %s AND status IN ({_marks(statuses)})", "NOT cancel_requested"]
        args: list[Any] = [owner, *(s.value for s in statuses)]
        if batch_id is not None:
            where.append("batch_id = %s")
            args.append(batch_id)
        return self._newest_first(where, args, type=type, before_id=before_id, limit=limit)

    def end_many(
        self, job_ids: Sequence[str], *, owner: str, from_: Iterable[JobStatus], to: JobStatus, message: str, at
    ) -> list[str]:
        """`transition` of several unstarted jobs of the owner to a terminal `to` in one UPDATE, each
        guarded by `from_` (a held one is held no more; one with a callback has its webhook due `at`);
        returns the ids this call ended (`_changed`)."""
        if not job_ids:
            return []
        states = [s.value for s in from_]
        changed, _ = self._execute(
            "UPDATE jobs SET status = %s, message = %s, finished_at = %s, updated_at = %s, held = FALSE,"
            " callback_due_at = IF(callback_url IS NULL, callback_due_at, %s)"
            f" WHERE owner = %s AND id IN ({_marks(job_ids)}) AND status IN ({_marks(states)})",
            (to.value, message, at, at, at, owner, *job_ids, *states),
        )
        return self._changed(job_ids, changed, "status = %s AND finished_at = %s", (to.value, at))

    def request_cancel_many(self, job_ids: Sequence[str], *, owner: str, at) -> list[str]:
        """`request_cancel` of several of the owner's jobs in one UPDATE; returns the ids of those
        it flagged (the RUNNING ones: `_changed`)."""
        if not job_ids:
            return []
        changed, _ = self._execute(
            "UPDATE jobs SET cancel_requested = TRUE, updated_at = %s"
            f" WHERE owner = %s AND status = %s AND id IN ({_marks(job_ids)})",
            (at, owner, JobStatus.RUNNING.value, *job_ids),
        )
        return self._changed(job_ids, changed, "status = %s AND cancel_requested", (JobStatus.RUNNING.value,))

    def _changed(self, job_ids: Sequence[str], changed: int, mark: str, args: Sequence[Any]) -> list[str]:
        """Which of `job_ids` a multi-row UPDATE that changed `changed` rows changed: all of them
        when it changed as many (the usual case, no statement); else those a SELECT finds bearing its
        `mark` (the others had moved on: started, ended)."""
        if changed == len(job_ids):
            return list(job_ids)
        _, rows = self._execute(f"SELECT id FROM jobs WHERE id IN ({_marks(job_ids)}) AND {mark}", (*job_ids, *args))
        return [row["id"] for row in rows]

    # --- the sweeper -----------------------------------------------------------------------------
    def mark_unsent(self, job_id: str) -> None:
        """Record that the PENDING job's message did not go out (the send failed): the sweeper sends it."""
        self._execute(
            "UPDATE jobs SET sent = FALSE WHERE id = %s AND status IN (%s, %s)",
            (job_id, JobStatus.PENDING.value, JobStatus.SCHEDULED.value),
        )

    def pending(self, *, sent: bool, updated_before, limit: int) -> list[Job]:
        """PENDING jobs whose message went out (`sent`) or did not, not updated since `updated_before`,
        oldest first (ix_jobs_status_sent_updated); held jobs are neither."""
        _, rows = self._execute(
            f"SELECT {_COLUMNS} FROM jobs WHERE status = %s AND sent = %s AND NOT held AND updated_at < %s"
            " ORDER BY updated_at LIMIT %s",
            (JobStatus.PENDING.value, sent, updated_before, limit),
        )
        return [_job(row) for row in rows]

    def stale(self, status: JobStatus, *, updated_before, limit: int) -> list[Job]:
        """Jobs in `status` not updated since `updated_before`, oldest first (ix_jobs_status_updated)."""
        _, rows = self._execute(
            f"SELECT {_COLUMNS} FROM jobs WHERE status = %s AND updated_at < %s ORDER BY updated_at LIMIT %s",
            (status.value, updated_before, limit),
        )
        return [_job(row) for row in rows]

    def overdue(self, *, now, limit: int) -> list[Job]:
        """RUNNING jobs that have run longer than their timeoutSeconds."""
        _, rows = self._execute(
            f"SELECT {_COLUMNS} FROM jobs WHERE status = %s"
            " AND started_at < %s - INTERVAL timeout_seconds SECOND LIMIT %s",
            (JobStatus.RUNNING.value, now, limit),
        )
        return [_job(row) for row in rows]

    def touch(self, job_ids: list[str], *, status: JobStatus, at) -> None:
        """Set updated_at of these jobs (still in `status`), and `sent`: the sweeper's mark of a re-send."""
        if job_ids:
            self._execute(
                "UPDATE jobs SET updated_at = %s, sent = TRUE WHERE status = %s"
                f" AND id IN ({', '.join(['%s'] * len(job_ids))})",
                (at, status.value, *job_ids),
            )

    def expired(self, *, finished_before, limit: int) -> list[tuple[str, str | None]]:
        """(id, result key) of up to `limit` finished jobs last updated before `finished_before`."""
        finished = sorted(status.value for status in TERMINAL)
        _, rows = self._execute(
            f"SELECT id, result_key FROM jobs WHERE status IN ({', '.join(['%s'] * len(finished))})"
            " AND updated_at < %s LIMIT %s",
            (*finished, finished_before, limit),
        )
        return [(row["id"], row["result_key"]) for row in rows]

    def count_active(self, owner: str) -> ActiveCounts:
        """The owner's unfinished jobs by status, and how many of them are held: one index range
        (ix_jobs_owner_status), as long as the owner's active jobs, never its history."""
        active = [s.value for s in JobStatus if not s.terminal]
        _, rows = self._execute(
            "SELECT status, COUNT(*) AS n, CAST(SUM(held) AS UNSIGNED) AS held FROM jobs WHERE owner = %s"
            f" AND status IN ({', '.join(['%s'] * len(active))}) GROUP BY status",
            (owner, *active),
        )
        counts = dict.fromkeys((JobStatus(v) for v in active), 0)
        counts.update({JobStatus(row["status"]): row["n"] for row in rows})
        return ActiveCounts(counts, held=sum(int(row["held"] or 0) for row in rows))

    # --- held jobs (holds.py) --------------------------------------------------------------------
    def hold(self, job_id: str, *, message: str) -> bool:
        """Hold a PENDING job no message was sent for; False if it moved on."""
        changed, _ = self._execute(
            "UPDATE jobs SET held = TRUE, message = %s WHERE id = %s AND status = %s",
            (message, job_id, JobStatus.PENDING.value),
        )
        return changed == 1

    def hold_many(self, job_ids: Sequence[str], *, message: str) -> None:
        """Hold these PENDING jobs no message was sent for (a batch's over its owner's running cap)."""
        self._execute(
            "UPDATE jobs SET held = TRUE, message = %s"
            f" WHERE status = %s AND id IN ({', '.join(['%s'] * len(job_ids))})",
            (message, JobStatus.PENDING.value, *job_ids),
        )

    def held(self, owner: str, *, limit: int) -> list[tuple[str, Priority]]:
        """Ids of the owner's oldest held jobs, each with its priority (the queue it goes to), by
        ix_jobs_held_owner."""
        _, rows = self._execute(
            "SELECT id, priority FROM jobs WHERE held AND owner = %s AND status = %s ORDER BY id LIMIT %s",
            (owner, JobStatus.PENDING.value, limit),
        )
        return [(row["id"], Priority(row["priority"])) for row in rows]

    def release_held(self, job_id: str) -> bool:
        """Clear a held job's `held` (and `sent`, until its message is out); True if this call did."""
        changed, _ = self._execute(
            "UPDATE jobs SET held = FALSE, sent = FALSE, message = NULL, updated_at = %s"
            " WHERE id = %s AND held AND status = %s",
            (utcnow(), job_id, JobStatus.PENDING.value),
        )
        return changed == 1

    def mark_sent(self, job_id: str) -> None:
        """Record that the PENDING job's message went out."""
        self._execute("UPDATE jobs SET sent = TRUE WHERE id = %s AND status = %s", (job_id, JobStatus.PENDING.value))

    def scheduled(self, *, sent: bool, due_before, limit: int) -> list[Job]:
        """SCHEDULED jobs whose message went out (`sent`) or not, due before `due_before`, soonest
        first (ix_jobs_status_run_at)."""
        _, rows = self._execute(
            f"SELECT {_COLUMNS} FROM jobs WHERE status = %s AND sent = %s AND run_at < %s ORDER BY run_at LIMIT %s",
            (JobStatus.SCHEDULED.value, sent, due_before, limit),
        )
        return [_job(row) for row in rows]

    def owners_with_held(self, *, limit: int) -> list[str]:
        """Owners that have held jobs (ix_jobs_held_owner), at most `limit`."""
        _, rows = self._execute(
            "SELECT DISTINCT owner FROM jobs WHERE held AND status = %s LIMIT %s", (JobStatus.PENDING.value, limit)
        )
        return [row["owner"] for row in rows]

    def delete_unsent(self, job_ids: Sequence[str]) -> int:
        """Delete these jobs, unstarted and never sent (a submission refused after its insert), and
        their dependency rows; returns how many jobs went."""
        unstarted = [s.value for s in JobStatus if s.unstarted]
        marks = ", ".join(["%s"] * len(job_ids))
        deleted, _ = self._execute(
            f"DELETE FROM jobs WHERE id IN ({marks}) AND status IN ({', '.join(['%s'] * len(unstarted))})",
            (*job_ids, *unstarted),
        )
        self._execute(f"DELETE FROM job_dependencies WHERE job_id IN ({marks})", job_ids)
        return deleted

    def delete_batch(self, batch_id: str) -> None:
        """Delete a batch's row (a batch refused after its insert; its jobs go with delete_unsent)."""
        self._execute("DELETE FROM batches WHERE id = %s", (batch_id,))

    def statuses(self, job_ids: Sequence[str]) -> dict[str, tuple[JobStatus, Any]]:
        """(status, run_at) of each of these jobs that exists, in one statement (the schedules' overlap rule)."""
        if not job_ids:
            return {}
        _, rows = self._execute(
            f"SELECT id, status, run_at FROM jobs WHERE id IN ({', '.join(['%s'] * len(job_ids))})", tuple(job_ids)
        )
        return {row["id"]: (JobStatus(row["status"]), row["run_at"]) for row in rows}

    def purge(self, job_ids: list[str]) -> int:
        """Delete these jobs if they are finished (`expired` found them); returns how many."""
        if not job_ids:
            return 0
        finished = sorted(status.value for status in TERMINAL)
        deleted, _ = self._execute(
            f"DELETE FROM jobs WHERE status IN ({', '.join(['%s'] * len(finished))})"
            f" AND id IN ({', '.join(['%s'] * len(job_ids))})",
            (*finished, *job_ids),
        )
        # A finished job waits for nothing any more: its dependency rows go with it.
        self._execute(f"DELETE FROM job_dependencies WHERE job_id IN ({', '.join(['%s'] * len(job_ids))})", job_ids)
        return deleted

    # --- completion webhooks (webhooks/) ---------------------------------------------------------
    def callback_queued(self, job_ids: Sequence[str], *, at) -> None:
        """Mark these jobs' webhooks as on the queue, due `at`, unless an attempt already moved them on."""
        if job_ids:
            self._execute(
                "UPDATE jobs SET callback_state = %s, callback_due_at = %s WHERE callback_state = %s"
                f" AND id IN ({', '.join(['%s'] * len(job_ids))})",
                (CallbackState.QUEUED.value, at, CALLBACK_WAITING, *job_ids),
            )

    def callbacks_due(self, state: CallbackState, *, due_before, limit: int) -> list[tuple[str, str, int]]:
        """(id, owner, attempts made) of ended jobs whose webhook is in `state` and was due before
        `due_before`, oldest first (ix_jobs_callback_due)."""
        finished = sorted(status.value for status in TERMINAL)
        _, rows = self._execute(
            "SELECT id, owner, COALESCE(JSON_LENGTH(deliveries), 0) AS attempts FROM jobs"
            " WHERE callback_state = %s AND callback_due_at < %s"
            f" AND status IN ({', '.join(['%s'] * len(finished))}) ORDER BY callback_due_at LIMIT %s",
            (state.value, due_before, *finished, limit),
        )
        return [(row["id"], row["owner"], int(row["attempts"])) for row in rows]

    def touch_callbacks(self, job_ids: Sequence[str], *, at) -> None:
        """Set the due time of these QUEUED webhooks: the sweeper's mark of a re-send."""
        if job_ids:
            self._execute(
                "UPDATE jobs SET callback_due_at = %s WHERE callback_state = %s"
                f" AND id IN ({', '.join(['%s'] * len(job_ids))})",
                (at, CallbackState.QUEUED.value, *job_ids),
            )

    def get_delivery(self, job_id: str) -> tuple[Job, CallbackState | None, list[dict[str, Any]]] | None:
        """The job, its webhook's state and the attempts made so far; None for no such job."""
        _, rows = self._execute(
            f"SELECT {_COLUMNS}, callback_state, deliveries FROM jobs WHERE id = %s",
            (job_id,),
        )
        if not rows:
            return None
        row = rows[0]
        state = None if row["callback_state"] is None else CallbackState(row["callback_state"])
        return _job(row), state, list(_load(row["deliveries"]) or [])

    def record_delivery(
        self, job_id: str, *, made: int, deliveries: list[dict[str, Any]], state: CallbackState, due_at
    ) -> bool:
        """Store the attempts (and the webhook's new state and due time) if the row still shows `made`
        attempts and an open webhook; False when another delivery of the job got there first."""
        changed, _ = self._execute(
            "UPDATE jobs SET deliveries = %s, callback_state = %s, callback_due_at = %s"
            " WHERE id = %s AND callback_state IN (%s, %s) AND COALESCE(JSON_LENGTH(deliveries), 0) = %s",
            (_dump(deliveries), state.value, due_at, job_id, *_OPEN_CALLBACK, made),
        )
        return changed == 1

    def deliveries(self, job_id: str, *, owner: str) -> list[dict[str, Any]] | None:
        """The webhook attempts of the owner's job (empty without any); None for no such job."""
        _, rows = self._execute("SELECT deliveries FROM jobs WHERE id = %s AND owner = %s", (job_id, owner))
        return None if not rows else list(_load(rows[0]["deliveries"]) or [])

    # --- workflows: batches and dependencies (dependencies.py, batches.py) ------------------------
    def insert_batch(
        self,
        batch: Batch,
        jobs: Sequence[tuple[Job, bool]],
        dependencies: Sequence[tuple[str, str]],
        *,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
    ) -> Batch:
        """Store a batch, its jobs (job, sent) and their dependencies in one transaction of three
        statements (the jobs in one multi-row INSERT); with an idempotency key, return the batch it
        already made instead (IdempotencyKeyReused for another request under the same key)."""
        statements = [
            (
                "INSERT INTO batches (id, owner, job_count, then_job_id, then_on_failure, callback_url,"
                " idempotency_key, request_hash, created_at, updated_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    batch.id,
                    batch.owner,
                    batch.job_count,
                    batch.then_job_id,
                    batch.then_on_failure,
                    batch.callback_url,
                    idempotency_key,
                    request_hash,
                    batch.created_at,
                    batch.created_at,
                ),
            ),
            _insert_jobs([(job, sent, None, None) for job, sent in jobs]),
        ]
        if dependencies:
            statements.append(_insert_dependencies(dependencies))
        try:
            self._transaction(statements)
            return batch
        except pymysql.IntegrityError as exc:
            if exc.args[0] != ER.DUP_ENTRY:
                raise errors.StoreUnavailable(f"MySQL: {exc}") from exc
        found = self._batch_where("id = %s", (batch.id,)) if idempotency_key is None else None
        if found is None and idempotency_key is not None:
            found = self._batch_where("owner = %s AND idempotency_key = %s", (batch.owner, idempotency_key))
        if found is None:
            raise errors.StoreUnavailable("MySQL: duplicate key but no batch")
        existing, existing_hash = found
        if idempotency_key is not None and existing_hash != request_hash:
            raise errors.IdempotencyKeyReused(
                "this Idempotency-Key was already used with a different request", batchId=existing.id
            )
        return existing

    def get_batch(self, batch_id: str, *, owner: str) -> Batch | None:
        """The owner's batch with that id, or None."""
        found = self._batch_where("id = %s AND owner = %s", (batch_id, owner))
        return None if found is None else found[0]

    def _batch_where(self, where: str, args: Sequence[Any]) -> tuple[Batch, str | None] | None:
        _, rows = self._execute(
            "SELECT id, owner, job_count, then_job_id, then_on_failure, callback_url, cancelled, created_at,"
            f" request_hash FROM batches WHERE {where}",
            args,
        )
        if not rows:
            return None
        row = rows[0]
        batch = Batch(
            id=row["id"],
            owner=row["owner"],
            job_count=row["job_count"],
            then_job_id=row["then_job_id"],
            then_on_failure=row["then_on_failure"],
            created_at=row["created_at"],
            cancelled=bool(row["cancelled"]),
            callback_url=row["callback_url"],
        )
        return batch, row["request_hash"]

    def batch_members(self, batch_id: str) -> list[tuple[str, JobStatus, int]]:
        """(id, status, progress) of every job of the batch, its `then` included, in id order (the
        order of submission): one index range (ix_jobs_batch_status)."""
        _, rows = self._execute("SELECT id, status, progress FROM jobs WHERE batch_id = %s ORDER BY id", (batch_id,))
        return [(row["id"], JobStatus(row["status"]), row["progress"]) for row in rows]

    def mark_batch_cancelled(self, batch_id: str) -> None:
        """Record that the batch was cancelled (DELETE /batches/{id})."""
        self._execute("UPDATE batches SET cancelled = TRUE, updated_at = %s WHERE id = %s", (utcnow(), batch_id))

    def dependency_state(self, job_id: str) -> DependencyState | None:
        """The job's status and its dependencies' states in one statement; None for no such job."""
        finished = sorted(status.value for status in TERMINAL)
        marks = ", ".join(["%s"] * len(finished))
        _, rows = self._execute(
            "SELECT w.status, w.run_on_failure, COUNT(d.depends_on) AS total,"
            f" COALESCE(SUM(j.status NOT IN ({marks})), 0) AS active,"
            " MIN(CASE WHEN j.status IN (%s, %s) THEN CONCAT(j.id, ' ', j.status) END) AS failed"
            " FROM jobs w LEFT JOIN job_dependencies d ON d.job_id = w.id LEFT JOIN jobs j ON j.id = d.depends_on"
            " WHERE w.id = %s GROUP BY w.id, w.status, w.run_on_failure",
            (*finished, JobStatus.FAILED.value, JobStatus.CANCELLED.value, job_id),
        )
        if not rows:
            return None
        row = rows[0]
        failed = None
        if row["failed"]:
            failed_id, failed_status = row["failed"].split(" ")
            failed = (failed_id, JobStatus(failed_status))
        return DependencyState(
            status=JobStatus(row["status"]),
            run_on_failure=bool(row["run_on_failure"]),
            total=int(row["total"]),
            active=int(row["active"]),
            failed=failed,
        )

    def dependencies_of(self, job_id: str) -> list[str]:
        """The ids of the jobs this one waits for (its `job_dependencies` rows, the primary key's prefix)."""
        _, rows = self._execute("SELECT depends_on FROM job_dependencies WHERE job_id = %s", (job_id,))
        return [row["depends_on"] for row in rows]

    def release_waiting(self, job_id: str, *, at) -> bool:
        """WAITING -> PENDING, its message not yet out (`sent` FALSE: the outbox covers a crash before
        the send); True if this call released it."""
        changed, _ = self._execute(
            "UPDATE jobs SET status = %s, sent = FALSE, updated_at = %s WHERE id = %s AND status = %s",
            (JobStatus.PENDING.value, at, job_id, JobStatus.WAITING.value),
        )
        return changed == 1

    def waiting_on(self, job_id: str, *, limit: int) -> list[str]:
        """The WAITING jobs that depend on this one (ix_dependencies_depends_on)."""
        _, rows = self._execute(
            "SELECT d.job_id FROM job_dependencies d JOIN jobs w ON w.id = d.job_id"
            " WHERE d.depends_on = %s AND w.status = %s LIMIT %s",
            (job_id, JobStatus.WAITING.value, limit),
        )
        return [row["job_id"] for row in rows]

    def dependency_results(self, job_id: str, *, after: str | None, limit: int) -> list[dict[str, Any]]:
        """A page of the job's dependencies' outcomes in id order, after the id `after`: id, status,
        result (or the key of its object), error."""
        _, rows = self._execute(
            "SELECT j.id, j.status, j.result, j.result_key, j.error FROM job_dependencies d"
            " JOIN jobs j ON j.id = d.depends_on WHERE d.job_id = %s AND d.depends_on > %s"
            " ORDER BY d.depends_on LIMIT %s",
            (job_id, after or "", limit),
        )
        return [{**row, "status": JobStatus(row["status"]), "result": _load(row["result"])} for row in rows]
