"""Wiring: builds the store, hot state, queues, job types, service, worker, sweeper and the webhook
delivery once per container.

Nothing connects at import or construction: each dependency is made on first use and then reused
by every later invocation of the same container. Its module is imported then too, so a function
loads only what it uses: the API function never the worker's modules, the worker never the routes'
services (`preload` imports them all where Lambda initialises ahead of events). The job types
(built-ins and JOB_TYPES) are imported once, on first use; a bad JOB_TYPES is logged once, naming
the module, and every later use answers the same `errors.Misconfigured` (a 503, not a stack trace
per request). Tests install their own Runtime with `use()`.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from functools import cached_property
from typing import TYPE_CHECKING

from . import errors
from .config import Settings
from .observability import logger as log

if TYPE_CHECKING:
    from .batches import Batches
    from .dependencies import Dependencies
    from .holds import Holds
    from .hotstate import HotState
    from .jobs import JobTypes
    from .objects import ObjectStore
    from .queue import DeliveryQueue, JobQueue
    from .schedules import ScheduleService
    from .service import JobService
    from .store import JobStore
    from .sweeper import Sweeper
    from .tenants import Tenants
    from .uploads import Uploads
    from .webhooks.delivery import Deliverer
    from .webhooks.outbox import Outbox
    from .webhooks.signing import SigningSecrets
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
            from .jobs import JobTypes

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

    def close(self) -> None:
        """Close the MySQL connection if one was made (tests and the local runner, between runtimes);
        a later statement would open a new one."""
        store = self.__dict__.get("store")
        if store is not None:
            store.close()

    def migrate(self) -> dict:
        """Apply the schema's pending migrations through the store's connection (the `migrate` function)."""
        from . import schema  # only this function needs it (and argparse): kept off the API's cold start

        report = schema.apply(self.store.connection)
        log.info("schema migrated", extra=report)
        return report

    @cached_property
    def store(self) -> JobStore:
        from . import secrets
        from .store import JobStore

        s = self.settings
        credentials = None
        if s.mysql_secret_arn:
            arn = s.mysql_secret_arn
            credentials = lambda: secrets.mysql_credentials(arn, endpoint_url=s.aws_endpoint_url, region=s.aws_region)  # noqa: E731
        return JobStore.from_url(s.mysql_url, tls=s.mysql_tls, tls_ca=s.mysql_tls_ca, credentials=credentials)

    @cached_property
    def hot(self) -> HotState:
        from . import hotstate, secrets

        s = self.settings
        token = s.redis_auth_token
        if token is None and s.redis_auth_secret_arn:
            token = secrets.read(s.redis_auth_secret_arn, endpoint_url=s.aws_endpoint_url, region=s.aws_region)
        return hotstate.HotState(
            hotstate.connect(s.redis_url, password=token),
            prefix=s.redis_prefix,
            active_ttl=s.active_ttl_seconds,
            terminal_ttl=s.terminal_ttl_seconds,
            inline_result_bytes=s.inline_result_bytes,
        )

    @cached_property
    def queue(self) -> JobQueue:
        from . import queue

        s = self.settings
        return queue.JobQueue(
            lambda: queue.connect(endpoint_url=s.aws_endpoint_url, region=s.aws_region),
            s.jobs_queue_url,
            high_url=s.jobs_high_queue_url,
        )

    @cached_property
    def delivery_queue(self) -> DeliveryQueue:
        from . import queue

        s = self.settings
        return queue.DeliveryQueue(
            lambda: queue.connect(endpoint_url=s.aws_endpoint_url, region=s.aws_region), s.webhooks_queue_url
        )

    @cached_property
    def outbox(self) -> Outbox:
        from .webhooks.outbox import Outbox

        return Outbox(self.store, self.delivery_queue)

    @cached_property
    def signing_secrets(self) -> SigningSecrets:
        from . import aws
        from .webhooks.signing import SigningSecrets

        s = self.settings
        return SigningSecrets(
            lambda: aws.client("secretsmanager", endpoint_url=s.aws_endpoint_url, region=s.aws_region),
            s.webhook_secret_prefix,
        )

    @cached_property
    def deliverer(self) -> Deliverer:
        from .results import Results
        from .webhooks.delivery import Deliverer  # only the delivery function needs it

        return Deliverer(
            self.store, self.delivery_queue, self.signing_secrets, Results(self.objects, self.settings), self.settings
        )

    @cached_property
    def objects(self) -> ObjectStore:
        from . import objects

        s = self.settings
        return objects.ObjectStore(lambda: objects.connect(endpoint_url=s.aws_endpoint_url, region=s.aws_region))

    @cached_property
    def tenants(self) -> Tenants:
        from . import tenants

        s = self.settings
        read = None if s.tenants_url is None else tenants.s3_reader(s.tenants_url, self.objects)
        return tenants.Tenants(read, ttl_seconds=s.tenants_ttl_seconds)

    def _job_parts(self) -> tuple[JobStore, HotState, JobQueue, JobTypes, ObjectStore, Settings]:
        """What the service and the worker are both made of, in their constructors' order."""
        return self.store, self.hot, self.queue, self.job_types, self.objects, self.settings

    @cached_property
    def holds(self) -> Holds:
        from .holds import Holds

        return Holds(self.store, self.queue, self.tenants)

    @cached_property
    def dependencies(self) -> Dependencies:
        from .dependencies import Dependencies

        return Dependencies(self.store, self.hot, self.queue)

    @cached_property
    def service(self) -> JobService:
        from .service import JobService

        return JobService(
            *self._job_parts(),
            tenants=self.tenants,
            outbox=self.outbox,
            holds=self.holds,
            dependencies=self.dependencies,
        )

    @cached_property
    def batches(self) -> Batches:
        from .batches import Batches

        return Batches(
            self.store,
            self.hot,
            self.queue,
            self.service,
            tenants=self.tenants,
            stall_after_seconds=self.settings.stall_after_seconds,
        )

    @cached_property
    def schedules(self) -> ScheduleService:
        from .schedule_store import ScheduleStore
        from .schedules import ScheduleService  # cronsim and zoneinfo: only schedules' routes and the sweeper

        return ScheduleService(ScheduleStore(self.store.execute), self.service, self.store, self.tenants)

    @cached_property
    def uploads(self) -> Uploads:
        from .uploads import Uploads

        return Uploads(self.objects, self.settings)

    @cached_property
    def sweeper(self) -> Sweeper:
        from .sweeper import Sweeper

        return Sweeper(
            self.store,
            self.hot,
            self.queue,
            self.settings,
            objects=self.objects,
            outbox=self.outbox,
            holds=self.holds,
            schedules=self.schedules,
            dependencies=self.dependencies,
        )

    @cached_property
    def worker(self) -> Worker:
        from .worker import Worker

        return Worker(
            *self._job_parts(),
            tenants=self.tenants,
            outbox=self.outbox,
            holds=self.holds,
            dependencies=self.dependencies,
        )


#: The modules the properties above import on first use (openapi: its route's own).
_ON_FIRST_USE = (
    *("store", "hotstate", "queue", "objects", "tenants", "holds", "dependencies", "service", "batches"),
    *("schedule_store", "schedules", "uploads", "sweeper", "worker", "webhooks.delivery", "openapi"),
)
#: Lambda's AWS_LAMBDA_INITIALIZATION_TYPE for an environment initialised before any event comes.
_AHEAD_OF_EVENTS = ("provisioned-concurrency", "snap-start")


def preload(environ: Mapping[str, str]) -> bool:
    """In an environment Lambda initialises ahead of its events (provisioned concurrency, SnapStart),
    import now every module a first event would, so that no event pays for one; on demand, nothing
    (each function then loads only what it uses). Whether it loaded them."""
    if environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") not in _AHEAD_OF_EVENTS:
        return False
    for name in _ON_FIRST_USE:
        importlib.import_module(f"{__package__}.{name}")
    return True


_current: Runtime | None = None


def get() -> Runtime:
    """The container's runtime, made from the environment on first use."""
    global _current
    if _current is None:
        _current = Runtime(Settings.from_env())
    return _current


def installed() -> Runtime | None:
    """The runtime in use, if one has been made or installed."""
    return _current


def use(runtime: Runtime | None) -> None:
    """Install a runtime (tests, the local runner); None goes back to the environment's."""
    global _current
    _current = runtime
