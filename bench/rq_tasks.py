"""The RQ side of the comparison: a ten-chunk no-op job that reports progress after every chunk."""

from rq import get_current_job


def chunked(steps: int = 10) -> dict:
    """`steps` no-op chunks, progress in `job.meta` saved after each (RQ's documented way)."""
    job = get_current_job()
    for done in range(1, steps + 1):
        job.meta["progress"] = {"done": done, "total": steps}
        job.save_meta()
    return {"steps": steps}
