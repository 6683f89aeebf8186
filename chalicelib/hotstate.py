"""Redis hot state with redis-py: what polls read and what workers write after every chunk.

Every key and TTL is built here and nowhere else (tests and benchmarks name keys through
`HotState.job_key`, `lease_key`, `orphan_key` and `keys_of`):

    {prefix}job:{id}    hash   seq, owner, job (the JobSnapshot as JSON: `encode`), ckpt (the job
                               type's state at its last chunk boundary, as JSON), cancel ("1"),
                               cadence (ms/chunk), external ("1": the result was too large for
                               Redis, read MySQL), checked (ms: when a GET last asked MySQL about a
                               quiet view), hop_token + hop (the newest hand-off taken), out_token +
                               out_hop + out_at (the newest hand-off sent, and when)
    {prefix}lease:{id}  string the token of the worker that holds the job; expires unless renewed
    {prefix}orphan:{id} string when the sweeper first found the RUNNING job without a lease (ms)
    {prefix}waiters:{id} set    the ids of the jobs waiting for this one to end (dependsOn, a
                               batch's `then`); a final write returns them
    {prefix}batch:{id}  hash   meta (the batch's row as JSON), members (its job ids, `then` last),
                               checked (ms: when a poll last asked MySQL about it)
    {prefix}slots:owner:{owner}, {prefix}slots:type:{type}
                        set    the ids of the owner's (the type's) jobs holding a running slot

The view and the checkpoint are fields of one hash, so an eviction takes both or neither (issue 16:
`volatile-lru` took a separate checkpoint key and left a view whose sequence no takeover could pass).
Deployments run Redis with `maxmemory-policy noeviction` (infra/data.yaml) all the same.

A write carries a sequence number and the script refuses one not newer than what is stored, so a
late writer never overwrites newer progress; terminal writes use FINAL_SEQ and are never replaced.
The same holder writing the same sequence again (a retry whose first reply was lost) is accepted.
The hash of an active job expires after `active_ttl` unless renewed (a safety net, not a clock);
a finished job's hash lives `terminal_ttl` so polls keep hitting Redis after the end.

The lease makes one worker at a time the job's holder. It is taken with the checkpoint read
(`acquire`), renewed by every checkpoint write, refused to anyone else while it lives, and released
by the final write. A write carrying a token that no longer holds the lease is refused and says so
(`lease_lost`): the worker stops, as a newer holder has the job.

Slots (`take_slots`) bound how many jobs of one owner (its plan's maxRunningJobs) and of one type
(its max_concurrency) run at once. A job holds a slot while its lease lives: the set's members
whose lease is gone (ended: the final write releases it; killed: it expired) are dropped when the
next job asks, so no slot outlives its holder and nothing has to give one back. (The script names
the members' lease keys itself: fine on a single-shard ElastiCache, which infra/ deploys.)

`ride_out` retries a call through a short outage (a restart, the first seconds of a failover), for a
bounded time, unless Redis has already been failing longer than that: then it is an outage, not a
blip, and callers take their slower path (MySQL) at once.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from . import errors
from .models import Job, JobSnapshot, JobStatus, Priority, as_utc

#: Sequence number of a terminal state: nothing written after it replaces it.
FINAL_SEQ = 2**50
#: The hash field holding the checkpoint (tests evict it through this name).
CHECKPOINT_FIELD = "ckpt"
#: How long a worker's write (a chunk's checkpoint, a final state) is retried through an outage.
#: Issue 16: a restart of about one second abandoned running jobs; a failover takes longer, and then
#: the worker hands the job to a delayed continuation instead (worker.py).
RIDE_OUT_SECONDS = 5.0
#: How long a poll waits for Redis before answering from MySQL, at the start of an outage only:
#: long enough for the worker to have put its progress into MySQL (at its next chunk boundary).
READ_RIDE_OUT_SECONDS = 1.0
#: Pauses between tries: doubling from the first to the last.
RIDE_OUT_FIRST_PAUSE, RIDE_OUT_LONGEST_PAUSE = 0.05, 0.5

T = TypeVar("T")

# One round trip: refuse a writer whose lease was taken over and an older write (but the same holder's
# same write again: a retry), else store the job and checkpoint with their TTL and renew (or, final,
# release) the lease; in every case report the cancel flag and, for a final write given the job's
# waiters set (KEYS[3]), the jobs that wait for this one (dependencies.py), even when a first try of
# the same final write got there before. A chunk's write is five calls (HMGET,
# GET, HSET, SET, EXPIRE): the fewer, the less of Redis's one thread. A script called directly is one
# round trip (EVALSHA) once loaded; inside a pipeline it would cost two on every execute(), as redis-py's
# Pipeline.load_scripts sends SCRIPT EXISTS first
# (https://github.com/redis/redis-py/blob/v8.1.0/redis/client.py, measured with redis-py 8.1).
_WRITE = """
local stored = redis.call('HMGET', KEYS[1], 'cancel', 'seq')
local cancel = stored[1] or ''
local token, final = ARGV[8], ARGV[6] == '-'
local waiters = {}
if final and KEYS[3] then waiters = redis.call('SMEMBERS', KEYS[3]) end
local holder = false
if token ~= '' then holder = redis.call('GET', KEYS[2]) end
if holder and holder ~= token and not final then return {0, cancel, 1, waiters} end
local current, seq = tonumber(stored[2]), tonumber(ARGV[1])
if current and (current > seq or (current == seq and (final or not holder))) then
  return {0, cancel, 0, waiters}
end
local fields = {'seq', ARGV[1], 'owner', ARGV[2], 'job', ARGV[3]}
if ARGV[5] ~= '' then table.insert(fields, 'cadence'); table.insert(fields, ARGV[5]) end
if ARGV[7] == '1' then table.insert(fields, 'external'); table.insert(fields, '1') end
if not final and ARGV[6] ~= '' then table.insert(fields, 'ckpt'); table.insert(fields, ARGV[6]) end
redis.call('HSET', KEYS[1], unpack(fields))
if final then
  redis.call('HDEL', KEYS[1], 'ckpt', 'checked')
  if holder == token then redis.call('DEL', KEYS[2]) end
elseif token ~= '' then
  redis.call('SET', KEYS[2], token, 'PX', ARGV[9])
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
return {1, cancel, 0, waiters}
"""

# Take (or, for the same token, renew) the lease unless another token holds it; in the same round
# trip read the checkpoint, the cancel flag and the sequence number stored (which may be ahead of any
# checkpoint left: a takeover must write above it). A hand-off (ARGV[3], its hop in the chain of the
# token) is taken once: the hash keeps the newest hop taken of the token, and a message at or below
# it is a duplicate (0) while the lease lives, or when the chain has moved on (a later hop taken or
# sent); else, the lease expired, it is the redelivery of a message whose taker died (2: the caller
# takes the job over with a new token). Any other message (no hop) finds the job busy while a
# hand-off sent less than ARGV[6] ms ago (ARGV[5]: now) waits in the queue.
_ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return {0, false, '', 0} end
if ARGV[3] == '' then
  local f = redis.call('HMGET', KEYS[2], 'hop_token', 'hop', 'out_token', 'out_hop', 'out_at')
  if f[3] and not (f[1] == f[3] and tonumber(f[2]) >= tonumber(f[4]))
    and tonumber(ARGV[5]) - tonumber(f[5]) < tonumber(ARGV[6]) then return {0, false, '', 0} end
else
  local taken = redis.call('HMGET', KEYS[2], 'hop_token', 'hop')
  if taken[1] == ARGV[1] and tonumber(taken[2]) >= tonumber(ARGV[3]) then
    if holder or tonumber(taken[2]) > tonumber(ARGV[3]) then return {0, false, '', 0} end
    local out = redis.call('HMGET', KEYS[2], 'out_token', 'out_hop')
    if out[1] == ARGV[1] and tonumber(out[2]) > tonumber(ARGV[3]) then return {0, false, '', 0} end
    return {2, false, '', 0}
  end
  redis.call('HSET', KEYS[2], 'hop_token', ARGV[1], 'hop', ARGV[3])
  if redis.call('TTL', KEYS[2]) < 0 then redis.call('EXPIRE', KEYS[2], ARGV[4]) end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local fields = redis.call('HMGET', KEYS[2], 'ckpt', 'cancel', 'seq')
return {1, fields[1], fields[2] or '', tonumber(fields[3]) or 0}
"""

# Note when a GET last asked MySQL about the jobs' quiet views, unless a hash is gone (a mark alone
# would be a hash without a view or a TTL). One key for GET /jobs/{id}, several for GET /jobs?ids=.
_CHECKED = """
for _, key in ipairs(KEYS) do
  if redis.call('HEXISTS', key, 'job') == 1 then redis.call('HSET', key, 'checked', ARGV[1]) end
end
return 1
"""

# For each (lease, mark, hash) triple: a held lease, or a hand-off sent and not yet taken less than
# ARGV[3] ms ago (its message waits in the queue), clears the mark; else the mark keeps the time the
# job was first seen without either (ARGV[1], expiring after ARGV[2] ms), and is returned.
_ORPHANS = """
local since = {}
for i = 1, #KEYS, 3 do
  local f = redis.call('HMGET', KEYS[i + 2], 'hop_token', 'hop', 'out_token', 'out_hop', 'out_at')
  local queued = f[3] and not (f[1] == f[3] and tonumber(f[2]) >= tonumber(f[4]))
    and tonumber(ARGV[1]) - tonumber(f[5]) < tonumber(ARGV[3])
  if redis.call('EXISTS', KEYS[i]) == 1 or queued then
    redis.call('DEL', KEYS[i + 1])
    since[#since + 1] = ''
  else
    redis.call('SET', KEYS[i + 1], ARGV[1], 'NX', 'PX', ARGV[2])
    since[#since + 1] = redis.call('GET', KEYS[i + 1])
  end
end
return since
"""

# Record the hand-off just sent (token, hop, when), keeping the hash's TTL or giving it the active one.
_SENT = """
redis.call('HSET', KEYS[1], 'out_token', ARGV[1], 'out_hop', ARGV[2], 'out_at', ARGV[3])
if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], ARGV[4]) end
return 1
"""

# The time a job was first found without any holder (kept if already there); one round trip.
_FIRST_FOUND = """
redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
return redis.call('GET', KEYS[1])
"""

# Take a slot in each set of KEYS (its limit in ARGV[4 + i]) for job ARGV[1], all or none: a member
# already holds one; members whose lease (ARGV[2] .. id) is gone are dropped first. Unless ARGV[3] is
# '1' (a job already running: it is counted, never stopped), a full set refuses: {0, i, running}.
_TAKE_SLOTS = """
local job, prefix = ARGV[1], ARGV[2]
for i, key in ipairs(KEYS) do
  if redis.call('SISMEMBER', key, job) == 0 then
    local running = 0
    for _, member in ipairs(redis.call('SMEMBERS', key)) do
      if redis.call('EXISTS', prefix .. member) == 1 then running = running + 1
      else redis.call('SREM', key, member) end
    end
    if ARGV[3] ~= '1' and running >= tonumber(ARGV[4 + i]) then return {0, i, running} end
  end
end
for _, key in ipairs(KEYS) do
  redis.call('SADD', key, job)
  redis.call('EXPIRE', key, ARGV[4])
end
return {1, 0, 0}
"""

# A batch as polls read it, in one round trip, counted here so the reply stays small: its `meta`,
# `checked` and `members` fields, how many of its jobs Redis has no view of (the caller then reads
# MySQL), the sum of the members' progress, the `then` job's status ('' for none), then each status
# of the members with its count. The views are matched, not decoded: `encode` writes `"status":"X"`
# and `"progress":N` without spaces. The jobs' keys are named here, as _TAKE_SLOTS names leases.
_BATCH = """
local fields = redis.call('HMGET', KEYS[1], 'meta', 'members', 'checked', 'then')
if not fields[1] then return {} end
redis.call('EXPIRE', KEYS[1], ARGV[2])
local missing, progress, counts = 0, 0, {}
for id in string.gmatch(fields[2] or '', '[^,]+') do
  local view = redis.call('HGET', ARGV[1] .. id, 'job')
  if view then
    local status = string.match(view, '"status":"(%u+)"')
    counts[status] = (counts[status] or 0) + 1
    progress = progress + tonumber(string.match(view, '"progress":(%d+)'))
  else
    missing = missing + 1
  end
end
local then_status = ''
if fields[4] and fields[4] ~= '' then
  local view = redis.call('HGET', ARGV[1] .. fields[4], 'job')
  if view then then_status = string.match(view, '"status":"(%u+)"') else missing = missing + 1 end
end
local out = {fields[1], fields[3] or '', fields[2] or '', missing, progress, then_status}
for status, n in pairs(counts) do
  out[#out + 1] = status
  out[#out + 1] = n
end
return out
"""

# New jobs' views (KEYS[1..n], ARGV: ttl, n, m, then n (owner, view) pairs), the waiters of
# dependencies (KEYS[n+1..n+m]: a dependency's waiters set, ARGV: the waiter ids) and, if ARGV[4]
# is '1', a new batch's hash (the last key; its meta, members and then the last three ARGV). One command:
# the 500 jobs of a batch cost one round trip and no per-command packing.
_NEW = """
local ttl, n, m = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
for i = 1, n do
  redis.call('HSET', KEYS[i], 'seq', 0, 'owner', ARGV[4 + 2 * i - 1], 'job', ARGV[4 + 2 * i])
  redis.call('EXPIRE', KEYS[i], ttl)
end
for j = 1, m do
  redis.call('SADD', KEYS[n + j], ARGV[4 + 2 * n + j])
  redis.call('EXPIRE', KEYS[n + j], ttl)
end
if ARGV[4] == '1' then
  local key = KEYS[n + m + 1]
  redis.call('HSET', key, 'meta', ARGV[#ARGV - 2], 'members', ARGV[#ARGV - 1], 'then', ARGV[#ARGV])
  redis.call('EXPIRE', key, ttl)
end
return 1
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# Raise the cancel flag. If the hash is gone (flushed, expired), the flag alone is kept with the
# active TTL: GET then falls back to MySQL (no `job`), and the worker still reads the flag.
_CANCEL = """
redis.call('HSET', KEYS[1], 'cancel', '1')
if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return 1
"""


class _Direct:
    """The write script, called after every chunk and at every submit and end, sent the cheapest way
    redis-py allows: the command packed here, on a connection this thread keeps out of the pool (no
    check-out with its `can_read` poll and metrics, no client layers), with the client's own rules:
    one try again on a fresh connection after a drop (connect's Retry), the script loaded again
    after NOSCRIPT (a restart). Still one `send_packed_command`, one round trip. Measured here:
    about a third of a script call's time through the client (README, Performance)."""

    def __init__(self, client: redis.Redis, script: Any):
        self._client = client
        self._script = script
        self._local = threading.local()

    def _connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # Made by the pool but not checked out of it: it closes when its thread ends (its __del__).
            conn = self._local.conn = self._client.connection_pool.make_connection()
        return conn

    def __call__(self, keys: list[str], args: list[Any]) -> Any:
        packed = [_pack(["EVALSHA", self._script.sha, len(keys), *keys, *args])]
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.send_packed_command(packed)
                return conn.read_response()
            except redis.exceptions.NoScriptError:
                if attempt == 2:
                    raise
                self._client.script_load(self._script.script)
            except (redis.ConnectionError, redis.TimeoutError):
                conn.disconnect()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def _pack(parts: list[Any]) -> bytes:
    """A command in RESP: an array of bulk strings (str as UTF-8, int in decimal)."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        data = part.encode() if isinstance(part, str) else b"%d" % part
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def connect(url: str, *, password: str | None = None) -> redis.Redis:
    """A client for REDIS_URL (rediss:// for TLS) that reconnects once, quickly, after a drop."""
    return redis.Redis.from_url(
        url,
        **({"password": password} if password else {}),
        # redis-py 8.1 speaks RESP3 by default: every new connection first sends HELLO 3 and CLIENT
        # MAINT_NOTIFICATIONS (which Redis 7.0 rejects). RESP2 skips both, on a cold start and reconnects.
        protocol=2,
        decode_responses=True,
        socket_connect_timeout=1.0,
        socket_timeout=2.0,
        health_check_interval=30,
        # One quick retry, not redis-py's default of several seconds: when Redis is down, GET
        # must fall back to MySQL fast.
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), retries=1),
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)
_encode_json = json.JSONEncoder(separators=(",", ":")).encode
_MOMENTS = ("created_at", "updated_at", "run_at", "started_at", "finished_at")
_FIELDS = tuple(f.name for f in dataclasses.fields(JobSnapshot))


def encode(job: JobSnapshot) -> str:
    """The snapshot as the hash's `job` field: its fields by name, moments in epoch milliseconds."""
    record = {name: getattr(job, name) for name in _FIELDS}
    record["status"] = job.status.value
    for name in _MOMENTS:
        moment = record[name]
        record[name] = None if moment is None else (moment - _EPOCH) // timedelta(milliseconds=1)
    return json.dumps(record, separators=(",", ":"))


def decode(text: str) -> JobSnapshot:
    """The snapshot `encode` wrote."""
    record = json.loads(text)
    record["status"] = JobStatus(record["status"])
    record["priority"] = Priority(record.get("priority", Priority.NORMAL))  # absent in a view older than it
    for name in _MOMENTS:
        if record.get(name) is not None:  # a view written before a field existed lacks it
            record[name] = _EPOCH + timedelta(milliseconds=record[name])
    return JobSnapshot(**record)


#: The fields of a view that a chunk changes; RunningView encodes the others once per run.
_CHUNK_FIELDS = ("progress", "progress_detail", "message", "eta_seconds", "updated_at")


class RunningView:
    """`encode(job.snapshot())` of a running job, for the write after every chunk, at a fraction of
    its cost: the fields a chunk does not change are encoded once, and again only when one of them
    does (a retry's attempt and error); the chunk's own are appended to them. Same text to `decode`."""

    def __init__(self) -> None:
        self._fixed: tuple[Any, ...] | None = None
        self._head = ""

    def encode(self, job: Job) -> str:
        fixed = (job.status, job.attempts, job.error, job.cancel_requested, job.started_at, job.finished_at)
        if fixed != self._fixed or job.result is not None:
            record = json.loads(encode(job.snapshot()))
            for name in _CHUNK_FIELDS:
                del record[name]
            self._head, self._fixed = json.dumps(record, separators=(",", ":"))[:-1], fixed
        updated = job.updated_at or job.created_at
        chunk = {
            "progress": job.progress,
            "progress_detail": job.progress_detail,
            "message": job.message,
            "eta_seconds": job.eta_seconds,
            "updated_at": (as_utc(updated) - _EPOCH) // _MILLISECOND,
        }
        return f"{self._head},{_encode_json(chunk)[1:]}"


@dataclass(frozen=True)
class HotJob:
    """A job as Redis holds it; `job` already shows a raised cancel flag as `cancel_requested`."""

    owner: str
    job: JobSnapshot
    cadence_ms: int | None
    #: The final result is only in MySQL (too large to keep in Redis).
    result_external: bool = False
    #: When a GET last asked MySQL whether this quiet view is still true (epoch ms), if one did.
    checked_ms: int | None = None

    @classmethod
    def parse(
        cls,
        owner: str,
        record: str,
        cancel: str | None,
        cadence: str | None,
        external: str | None,
        checked: str | None = None,
    ) -> HotJob:
        job = decode(record)
        if cancel == "1" and not job.cancel_requested:
            job = replace(job, cancel_requested=True)
        return cls(owner, job, int(cadence) if cadence else None, external == "1", int(checked) if checked else None)


@dataclass(frozen=True)
class BatchRecord:
    """What a batch's hash keeps: its row as JSON (`meta`), its members' ids, its `then` job's id."""

    batch_id: str
    meta: str
    members: list[str]
    then: str | None = None


@dataclass(frozen=True)
class HotBatch:
    """A batch as Redis has it: its meta, its members counted by status and their progress summed."""

    meta: str
    checked_ms: int | None
    members: list[str]
    #: Jobs of the batch Redis has no view of: the counts are then not to be trusted.
    missing: int
    progress_sum: int
    then_status: JobStatus | None
    counts: dict[JobStatus, int]


@dataclass(frozen=True)
class WriteOutcome:
    """What a hot-state write did, and what it read in the same round trip."""

    written: bool
    cancel: bool
    #: Another worker holds the job's lease now: this one must stop.
    lease_lost: bool = False
    #: For a final write: the ids of the jobs registered as waiting for this one (`add_waiters`).
    waiters: tuple[str, ...] = ()


@dataclass(frozen=True)
class Slot:
    """A bound on jobs running at once: its Redis set (`slots:<name>`) and its limit."""

    name: str
    limit: int


@dataclass(frozen=True)
class SlotAnswer:
    """The outcome of `take_slots`: taken, or the full slot and how many jobs hold it."""

    taken: bool
    full: Slot | None = None
    running: int = 0


@dataclass(frozen=True)
class Lease:
    """The outcome of `acquire`: whether this token holds the job, and what the run starts from."""

    held: bool
    checkpoint: Any = None
    cancel: bool = False
    #: The hand-off was taken before by a run whose lease has expired (it died): take the job over.
    orphaned: bool = False
    #: The sequence number Redis holds for the job: a new holder's writes must go above it, even when
    #: the checkpoint it resumes from is older (Redis lost it: the run starts from MySQL's).
    seq: int = 0


class HotState:
    """The Redis side of jobs: one hash per job (view, checkpoint, cancel flag), its lease."""

    def __init__(
        self, client: redis.Redis, *, prefix: str, active_ttl: int, terminal_ttl: int, inline_result_bytes: int = 65536
    ):
        self._redis = client
        self._prefix = prefix
        self._inline_result_bytes = inline_result_bytes
        self.active_ttl = active_ttl
        self.terminal_ttl = terminal_ttl
        #: Every write (a submission's, a chunk's, a final one) goes the direct way (_Direct); a bulk
        #: cancel's final views go in a pipeline.
        self._write_script = client.register_script(_WRITE)
        self._write_direct = _Direct(client, self._write_script)
        self._cancel = client.register_script(_CANCEL)
        self._acquire = client.register_script(_ACQUIRE)
        self._release = client.register_script(_RELEASE)
        self._orphans = client.register_script(_ORPHANS)
        self._sent = client.register_script(_SENT)
        self._checked = client.register_script(_CHECKED)
        self._first_found = client.register_script(_FIRST_FOUND)
        self._take_slots = client.register_script(_TAKE_SLOTS)
        self._batch = client.register_script(_BATCH)
        self._new = _Direct(client, client.register_script(_NEW))
        #: When this process's calls began to fail without a success since (monotonic), if they do.
        self._failing_since: float | None = None

    def job_key(self, job_id: str) -> str:
        """The job's hash: seq, owner, view, cancel, cadence, external, the hand-offs taken and sent."""
        return f"{self._prefix}job:{job_id}"

    def lease_key(self, job_id: str) -> str:
        """The token of the worker holding the job."""
        return f"{self._prefix}lease:{job_id}"

    def orphan_key(self, job_id: str) -> str:
        """When the sweeper first found the RUNNING job without a lease."""
        return f"{self._prefix}orphan:{job_id}"

    def waiters_key(self, job_id: str) -> str:
        """The ids of the jobs that wait for this one to end (dependsOn, a batch's `then`)."""
        return f"{self._prefix}waiters:{job_id}"

    def batch_key(self, batch_id: str) -> str:
        """A batch's hash: `meta` (its row as JSON), `members` (its job ids), `checked` (ms)."""
        return f"{self._prefix}batch:{batch_id}"

    def slot_key(self, name: str) -> str:
        """The set of the jobs holding a slot of `name` (`owner:<owner>`, `type:<type>`)."""
        return f"{self._prefix}slots:{name}"

    def keys_of(self, job_id: str) -> list[str]:
        """Every key the job may have (what a flush or an expiry takes away)."""
        return [self.job_key(job_id), self.lease_key(job_id), self.orphan_key(job_id)]

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except redis.RedisError as exc:
            if self._failing_since is None:
                self._failing_since = time.monotonic()
            raise errors.HotStateUnavailable(f"Redis: {exc}") from exc
        self._failing_since = None

    def ride_out(self, call: Callable[[], T], *, seconds: float, sleep: Callable[[float], None] = time.sleep) -> T:
        """`call()`, tried again with growing pauses while it raises HotStateUnavailable, for up to
        `seconds` from now; at once if Redis has been failing for longer than that already (an
        outage, not a blip: the caller's own fallback serves better than waiting)."""
        started = time.monotonic()
        pause = RIDE_OUT_FIRST_PAUSE
        while True:
            try:
                return call()
            except errors.HotStateUnavailable:
                now, since = time.monotonic(), self._failing_since
                if now + pause > started + seconds or (since is not None and since < started - seconds):
                    raise
            sleep(pause)
            pause = min(pause * 2, RIDE_OUT_LONGEST_PAUSE)

    def get(self, job_id: str) -> HotJob | None:
        """The job's hot state in one round trip, or None when Redis has no complete record of it."""
        with self._translated():
            # The client decodes replies (decode_responses=True, see connect): str, not bytes.
            fields = cast(dict[str, str], self._redis.hgetall(self.job_key(job_id)))
        if "job" not in fields:
            return None
        return HotJob.parse(
            fields["owner"],
            fields["job"],
            fields.get("cancel"),
            fields.get("cadence"),
            fields.get("external"),
            fields.get("checked"),
        )

    def get_many(self, job_ids: list[str]) -> dict[str, HotJob]:
        """Hot state of several jobs in one round trip (a pipeline); ids Redis lacks are left out."""
        if not job_ids:
            return {}
        with self._translated():
            pipe = self._redis.pipeline(transaction=False)
            for job_id in job_ids:
                pipe.hmget(self.job_key(job_id), "owner", "job", "cancel", "cadence", "external", "checked")
            replies = pipe.execute()
        return {
            job_id: HotJob.parse(*fields)
            for job_id, fields in zip(job_ids, replies, strict=True)
            if fields[1] is not None
        }

    def write(
        self,
        job: JobSnapshot,
        *,
        seq: int,
        cadence_ms: float | None = None,
        checkpoint: Any = None,
        lease: str | None = None,
        lease_seconds: float = 0,
    ) -> WriteOutcome:
        """Store the job's snapshot (and checkpoint) unless a write with seq >= this one is there
        (but this holder's own write of this seq: a retry whose first reply was lost).

        One round trip, which also reads the cancel flag. With `lease`, the write is refused if
        another token holds the job, and renews the lease for `lease_seconds`; a final write is
        never refused for the lease (MySQL, already final, fenced it) and releases it. A terminal
        snapshot (seq FINAL_SEQ) gets the terminal TTL and drops the checkpoint. A result over
        `inline_result_bytes` is left out and the hash marked `external`: readers take it from MySQL.
        """
        options = {"cadence_ms": cadence_ms, "checkpoint": checkpoint, "lease": lease, "lease_seconds": lease_seconds}
        with self._translated():
            written, cancel, lost, waiters = self._write_direct(*self._write_args(job, seq, **options))
        return WriteOutcome(
            written=bool(written), cancel=cancel == "1", lease_lost=bool(lost), waiters=tuple(waiters or ())
        )

    def _write_args(self, job: JobSnapshot, seq: int, **options: Any) -> tuple[list[str], list[Any]]:
        """The keys and arguments of the write script for `write`'s arguments (`options`: its keywords)."""
        cadence_ms, checkpoint = options.get("cadence_ms"), options.get("checkpoint")
        lease, lease_seconds = options.get("lease"), options.get("lease_seconds", 0)
        final = seq >= FINAL_SEQ
        result_external = False
        if job.result is not None:
            # The worker measured the result once (results.py); a snapshot from elsewhere is measured here.
            size = job.result_bytes
            if size is None:
                size = len(json.dumps(job.result, separators=(",", ":")))
            if size > self._inline_result_bytes:
                job, result_external = replace(job, result=None), True
        ttl = self.terminal_ttl if final else self.active_ttl
        checkpoint_arg = "-" if final else ("" if checkpoint is None else json.dumps(checkpoint, separators=(",", ":")))
        # A final write reads the waiters set too (KEYS[3]: the jobs that wait for this one).
        keys = [self.job_key(job.id), self.lease_key(job.id)] + ([self.waiters_key(job.id)] if final else [])
        return keys, [
            seq,
            job.owner,
            encode(job),
            ttl,
            "" if cadence_ms is None else int(cadence_ms),
            checkpoint_arg,
            "1" if result_external else "",
            lease or "",
            max(1, int(lease_seconds * 1000)),
        ]

    def write_final_many(self, jobs: list[JobSnapshot]) -> list[str]:
        """`write` of several jobs' final views (FINAL_SEQ, no lease) in one pipeline: a bulk cancel's;
        returns the jobs registered as waiting for any of them. Two round trips: redis-py asks
        SCRIPT EXISTS before a pipeline that calls a script."""
        if not jobs:
            return []
        with self._translated():
            pipe = self._redis.pipeline(transaction=False)
            for job in jobs:
                keys, args = self._write_args(job, FINAL_SEQ)
                self._write_script(keys=keys, args=args, client=pipe)
            replies = pipe.execute()
        return [waiter for *_, waiters in replies for waiter in waiters or ()]

    def reset(self, job_id: str, *, keep_lease: bool = False) -> None:
        """Forget the job's hot state (view, checkpoint, cancel flag, hand-offs, orphan mark and, unless
        `keep_lease`, lease): the one deliberate replacement of a final view, for a retry, which
        writes its new view next. A late writer of the run before finds no sequence to be refused
        by, but no longer its fence in MySQL either, and its lease taken by the new run's worker or
        given up at its next end."""
        keys = [self.job_key(job_id), self.orphan_key(job_id)] + ([] if keep_lease else [self.lease_key(job_id)])
        with self._translated():
            self._redis.delete(*keys)

    def write_chunk(
        self,
        job: Job,
        view: RunningView,
        *,
        seq: int,
        checkpoint: str,
        lease: str,
        lease_seconds: float,
        cadence_ms: float | None = None,
    ) -> WriteOutcome:
        """`write` of a running job's chunk, the worker's one round trip per chunk: its view (`view`
        encodes it), its checkpoint (JSON text, measured by its maker) and the lease renewed by
        `lease`; the same script, the same refusals, the same cancel flag read."""
        with self._translated():
            written, cancel, lost, _ = self._write_direct(
                keys=[self.job_key(job.id), self.lease_key(job.id)],
                args=[
                    seq,
                    job.owner,
                    view.encode(job),
                    self.active_ttl,
                    "" if cadence_ms is None else int(cadence_ms),
                    checkpoint,
                    "",
                    lease,
                    max(1, int(lease_seconds * 1000)),
                ],
            )
        return WriteOutcome(written=bool(written), cancel=cancel == "1", lease_lost=bool(lost))

    def publish_new(
        self,
        jobs: list[JobSnapshot],
        *,
        waiters: Sequence[tuple[str, str]] = (),
        batch: BatchRecord | None = None,
    ) -> None:
        """Views of jobs just inserted (nobody else writes them yet: no message is out), the jobs that
        wait for others (`waiters`: (waiter, dependency) pairs) and a new batch's hash, in one round
        trip (one script)."""
        keys = [self.job_key(job.id) for job in jobs] + [self.waiters_key(dep) for _, dep in waiters]
        args: list[Any] = [self.active_ttl, len(jobs), len(waiters), "" if batch is None else "1"]
        for job in jobs:
            args += (job.owner, encode(job))
        args += [waiter for waiter, _ in waiters]
        if batch is not None:
            keys.append(self.batch_key(batch.batch_id))
            args += (batch.meta, ",".join(batch.members), batch.then or "")
        with self._translated():
            self._new(keys=keys, args=args)

    def add_waiters(self, waiters: list[tuple[str, str]]) -> None:
        """Register (waiter, dependency) pairs: the dependency's final write returns its waiters."""
        self.publish_new([], waiters=waiters)

    def batch(self, batch_id: str) -> HotBatch | None:
        """A batch as Redis has it, its members counted by status, in one round trip; None when Redis
        has no record of the batch."""
        with self._translated():
            reply = self._batch(keys=[self.batch_key(batch_id)], args=[self.job_key(""), self.active_ttl])
        if not reply:
            return None
        meta, checked, members, missing, progress, then_status, *pairs = reply
        return HotBatch(
            meta=meta,
            checked_ms=int(checked) if checked else None,
            members=members.split(",") if members else [],
            missing=int(missing),
            progress_sum=int(progress),
            then_status=JobStatus(then_status) if then_status else None,
            counts={JobStatus(pairs[i]): int(pairs[i + 1]) for i in range(0, len(pairs), 2)},
        )

    def put_batch(self, record: BatchRecord, *, checked_ms: int) -> None:
        """The batch's hash again, from MySQL (after a flush, an expiry, a quiet check)."""
        with self._translated():
            key = self.batch_key(record.batch_id)
            pipe = self._redis.pipeline(transaction=False)
            members = ",".join(record.members)
            pipe.hset(
                key, mapping={"meta": record.meta, "members": members, "then": record.then or "", "checked": checked_ms}
            )
            pipe.expire(key, self.active_ttl)
            pipe.execute()

    def acquire(
        self,
        job_id: str,
        token: str,
        *,
        lease_seconds: float,
        hop: int | None = None,
        now_ms: int = 0,
        queued_for_ms: int = 0,
    ) -> Lease:
        """Take the job's lease for `token` (renewing it if the token holds it already) unless
        another token holds it; with it, the checkpoint, the cancel flag and the sequence number
        stored. One round trip.

        With `hop` (a hand-off's number in the chain of `token`) the hand-off is taken only once:
        a second copy is refused while the lease lives or once the chain moved on, and reads
        `orphaned` when its taker died. Without, the job is busy while a hand-off sent less than
        `queued_for_ms` before `now_ms` waits in the queue (its message carries the job on).
        """
        lease_ms, hop_arg = max(1, int(lease_seconds * 1000)), "" if hop is None else hop
        with self._translated():
            held, checkpoint, cancel, seq = self._acquire(
                keys=[self.lease_key(job_id), self.job_key(job_id)],
                args=[token, lease_ms, hop_arg, self.active_ttl, now_ms, queued_for_ms],
            )
        if held != 1:
            return Lease(held=False, orphaned=held == 2)
        return Lease(
            held=True, checkpoint=json.loads(checkpoint) if checkpoint else None, cancel=cancel == "1", seq=int(seq)
        )

    def take_slots(self, job_id: str, slots: list[Slot], *, running: bool = False) -> SlotAnswer:
        """A slot of each of `slots` for the job, whose lease the caller holds: all or none, one
        round trip. A job `running` already (a hand-off, a take-over) is counted but never refused."""
        if not slots:
            return SlotAnswer(taken=True)
        with self._translated():
            taken, index, held = self._take_slots(
                keys=[self.slot_key(slot.name) for slot in slots],
                args=[job_id, self.lease_key(""), "1" if running else "", self.active_ttl, *(s.limit for s in slots)],
            )
        return SlotAnswer(taken=True) if taken == 1 else SlotAnswer(taken=False, full=slots[index - 1], running=held)

    def release(self, job_id: str, token: str) -> None:
        """Give the lease up, if `token` still holds it."""
        with self._translated():
            self._release(keys=[self.lease_key(job_id)], args=[token])

    def handed_off(self, job_id: str, token: str, *, hop: int, now_ms: int) -> None:
        """Record that the hand-off `hop` of `token` was sent: until it is taken, the job is not an
        orphan (its message waits in the queue) and a late copy of an earlier hop is stale."""
        with self._translated():
            self._sent(keys=[self.job_key(job_id)], args=[token, hop, now_ms, self.active_ttl])

    def orphans(
        self, job_ids: list[str], *, now_ms: int, confirm_after_ms: int, lost_after_ms: int = 6 * 3600 * 1000
    ) -> set[str]:
        """Which of these jobs have had neither a lease nor a hand-off waiting in the queue since at
        least `confirm_after_ms` ago.

        One round trip: such a job is marked with the time it was first seen so; a holder alive
        through a Redis flush re-takes its lease within one chunk, so only a job still without one
        `confirm_after_ms` (at least a lease period) later is confirmed an orphan. A hand-off sent
        but not taken for `lost_after_ms` is taken for lost.
        """
        if not job_ids:
            return set()
        keys = [
            key for job_id in job_ids for key in (self.lease_key(job_id), self.orphan_key(job_id), self.job_key(job_id))
        ]
        with self._translated():
            since = self._orphans(keys=keys, args=[now_ms, max(60_000, 10 * confirm_after_ms), lost_after_ms])
        return {
            job_id
            for job_id, first in zip(job_ids, since, strict=True)
            if first and now_ms - int(first) >= confirm_after_ms
        }

    def first_found_unheld(self, job_id: str, *, now_ms: int, keep_ms: int) -> int:
        """When the job was first found without a holder (epoch ms): `now_ms` unless an earlier
        finding (a worker's, the sweeper's `orphans`) is kept; the mark expires after `keep_ms`."""
        with self._translated():
            return int(self._first_found(keys=[self.orphan_key(job_id)], args=[now_ms, keep_ms]))

    def leased(self, job_ids: list[str]) -> set[str]:
        """Which of these jobs a worker holds right now (one round trip)."""
        if not job_ids:
            return set()
        with self._translated():
            pipe = self._redis.pipeline(transaction=False)
            for job_id in job_ids:
                pipe.exists(self.lease_key(job_id))
            replies = pipe.execute()
        return {job_id for job_id, held in zip(job_ids, replies, strict=True) if held}

    def mark_checked(self, job_id: str, *, at_ms: int) -> None:
        """Note that MySQL was asked about the job's quiet view at `at_ms` (so the next poll need not)."""
        self.mark_checked_many([job_id], at_ms=at_ms)

    def mark_checked_many(self, job_ids: list[str], *, at_ms: int) -> None:
        """`mark_checked` of several jobs in one round trip."""
        if not job_ids:
            return
        with self._translated():
            self._checked(keys=[self.job_key(job_id) for job_id in job_ids], args=[at_ms])

    def request_cancel(self, job_id: str) -> None:
        """Raise the job's cancel flag; the worker reads it at its next chunk boundary."""
        self.request_cancel_many([job_id])

    def request_cancel_many(self, job_ids: list[str]) -> None:
        """`request_cancel` of several jobs: one round trip for one (the script called directly), two
        for more (a pipeline, after redis-py's SCRIPT EXISTS)."""
        if not job_ids:
            return
        with self._translated():
            if len(job_ids) == 1:
                self._cancel(keys=[self.job_key(job_ids[0])], args=[self.active_ttl])
                return
            pipe = self._redis.pipeline(transaction=False)
            for job_id in job_ids:
                self._cancel(keys=[self.job_key(job_id)], args=[self.active_ttl], client=pipe)
            pipe.execute()

    def ping(self) -> None:
        """One cheap round trip, for health checks."""
        with self._translated():
            self._redis.ping()
