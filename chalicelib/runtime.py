"""Wiring: builds the store, hot state, queue, job types, service, worker and sweeper once per container.

Nothing connects at import or construction: each dependency is made on first use and then reused
by every later invocation of the same container. The job types (built-ins and JOB_TYPES) are
imported once, on first use; a bad JOB_TYPES is logged once, naming the module, and every later
use answers the same `errors.Misconfigured` (a 503, not a stack trace per request). Tests install
their own Runtime with `use()`.
"""

from __future__ import annotations

from functools import cached_property

from . import errors, hotstate, objects, queue, secrets, tenants
from .config import Settings
from .holds import Holds
from .hotstate import HotState
from .jobs import JobTypes
from .objects import ObjectStore
from .observability import logger as log
from .queue import JobQueue
from .service import JobService
from .store import JobStore
from .sweeper import Sweeper
from .tenants import Tenants
from .uploads import Uploads
from .worker import Worker


class Runtime:
    """The dependencies of one container, made lazily from its settings."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._job_types: JobTypes | errors.Misconfigured | None = None

    @property
    def job_types(self) -> JobTypes:
        """The built-in types and those of the JOB_TYPES modules, imported once."""
        if self._job_types is None:
            try:
                self._job_types = JobTypes.load(self.settings.job_types)
            except errors.Misconfigured as exc:
                log.error("job types cannot be loaded: %s", exc.message)
                self._job_types = exc
        if isinstance(self._job_types, errors.Misconfigured):
            raise errors.Misconfigured(self._job_types.message)
        return self._job_types

    def health(self) -> tuple[dict[str, str], str | None]:
        """Each dependency's state ("ok" or "unavailable"), and why the job types are unusable, if they are."""
        try:
            self.job_types.names()  # loading them is the check
        except errors.Misconfigured as exc:
            return {"jobTypes": "unavailable"}, exc.message
        return {"jobTypes": "ok", **self.service.health()}, None

    def migrate(self) -> dict:
        """Apply the schema's pending migrations through the store's connection (the `migrate` function)."""
        from . import schema  # only this function needs it (and argparse): kept off the API's cold start

        report = schema.apply(self.store.connection)
        log.info("schema migrated", extra=report)
        return report

    @cached_property
    def store(self) -> JobStore:
        s = self.settings
        credentials = None
        if s.mysql_secret_arn:
            arn = s.mysql_secret_arn
            credentials = lambda: secrets.mysql_credentials(arn, endpoint_url=s.aws_endpoint_url, region=s.aws_region)  # noqa: E731
        return JobStore.from_url(s.mysql_url, tls=s.mysql_tls, tls_ca=s.mysql_tls_ca, credentials=credentials)

    @cached_property
    def hot(self) -> HotState:
        s = self.settings
        token = s.redis_auth_token
        if token is None and s.redis_auth_secret_arn:
            token = secrets.read(s.redis_auth_secret_arn, endpoint_url=s.aws_endpoint_url, region=s.aws_region)
        return HotState(
            hotstate.connect(s.redis_url, password=token),
            prefix=s.redis_prefix,
            active_ttl=s.active_ttl_seconds,
            terminal_ttl=s.terminal_ttl_seconds,
            inline_result_bytes=s.inline_result_bytes,
        )

    @cached_property
    def queue(self) -> JobQueue:
        s = self.settings
        return JobQueue(lambda: queue.connect(endpoint_url=s.aws_endpoint_url, region=s.aws_region), s.jobs_queue_url)

    @cached_property
    def objects(self) -> ObjectStore:
        s = self.settings
        return ObjectStore(lambda: objects.connect(endpoint_url=s.aws_endpoint_url, region=s.aws_region))

    @cached_property
    def tenants(self) -> Tenants:
        s = self.settings
        read = None if s.tenants_url is None else tenants.s3_reader(s.tenants_url, self.objects)
        return Tenants(read, ttl_seconds=s.tenants_ttl_seconds)

    def _job_parts(self) -> tuple[JobStore, HotState, JobQueue, JobTypes, ObjectStore, Settings]:
        """What the service and the worker are both made of, in their constructors' order."""
        return self.store, self.hot, self.queue, self.job_types, self.objects, self.settings

    @cached_property
    def holds(self) -> Holds:
        return Holds(self.store, self.queue, self.tenants)

    @cached_property
    def service(self) -> JobService:
        return JobService(*self._job_parts(), tenants=self.tenants, holds=self.holds)

    @cached_property
    def uploads(self) -> Uploads:
        return Uploads(self.objects, self.settings)

    @cached_property
    def sweeper(self) -> Sweeper:
        return Sweeper(self.store, self.hot, self.queue, self.settings, objects=self.objects, holds=self.holds)

    @cached_property
    def worker(self) -> Worker:
        return Worker(*self._job_parts(), tenants=self.tenants, holds=self.holds)


_current: Runtime | None = None


def get() -> Runtime:
    """The container's runtime, made from the environment on first use."""
    global _current
    if _current is None:
        _current = Runtime(Settings.from_env())
    return _current


def use(runtime: Runtime | None) -> None:
    """Install a runtime (tests, the local runner); None goes back to the environment's."""
    global _current
    _current = runtime
