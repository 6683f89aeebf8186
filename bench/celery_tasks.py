"""The Celery side of the comparison: Redis broker, Redis result backend, progress with update_state.

Workers start as `celery -A bench.celery_tasks worker`; BENCH_CELERY_URL and BENCH_CELERY_QUEUE
say which Redis database and queue (bench/compare.py sets them).
"""

import os

from celery import Celery

URL = os.environ.get("BENCH_CELERY_URL", "redis://127.0.0.1:6379/15")
QUEUE = os.environ.get("BENCH_CELERY_QUEUE", "bench")

app = Celery("bench", broker=URL, backend=URL)
app.conf.update(
    task_default_queue=QUEUE,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    worker_redirect_stdouts=False,
)


@app.task(bind=True)
def chunked(self, steps: int = 10) -> dict:
    """`steps` no-op chunks, progress stored with update_state after each (Celery's documented way)."""
    for done in range(1, steps + 1):
        self.update_state(state="PROGRESS", meta={"done": done, "total": steps})
    return {"steps": steps}
