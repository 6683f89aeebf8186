"""The store's named guarded writes: each wins only under its condition, and says whether it won."""

from chalicelib.models import JobStatus, utcnow


def _checkpoint(store, job_id, token, seq, **extra):
    return store.save_checkpoint(
        job_id,
        fenced_by=token,
        checkpoint={"seq": seq, "state": seq},
        checkpoint_seq=seq,
        progress=seq,
        progress_detail=None,
        message=None,
        at=utcnow(),
        **extra,
    )


def test_start_wins_once_and_only_from_pending(api, rt):
    job_id = api.submit("sleep", {"steps": 1}).json["jobId"]

    assert rt.store.start(job_id, token="first", at=utcnow()) is True
    assert rt.store.start(job_id, token="second", at=utcnow()) is False  # already RUNNING

    job = rt.store.get_job(job_id, with_checkpoint=True)
    assert job.status is JobStatus.RUNNING and job.attempts == 1 and job.lease_token == "first"


def test_a_claim_moves_the_fence_and_the_previous_holders_checkpoint_misses(api, rt):
    job_id = api.submit("sleep", {"steps": 1}).json["jobId"]
    rt.store.start(job_id, token="old", at=utcnow())

    assert rt.store.claim(job_id, token="new", at=utcnow()) is True
    assert _checkpoint(rt.store, job_id, "old", 5) is False
    assert _checkpoint(rt.store, job_id, "new", 3, retry_error="RuntimeError: boom") is True

    job = rt.store.get_job(job_id, with_checkpoint=True)
    assert job.checkpoint == {"seq": 3, "state": 3} and job.progress == 3
    assert job.attempts == 2 and job.error == "RuntimeError: boom"


def test_nothing_claims_or_checkpoints_a_job_that_is_not_running(api, rt):
    job_id = api.submit("sleep", {"steps": 1}).json["jobId"]

    assert rt.store.claim(job_id, token="t", at=utcnow()) is False  # PENDING
    rt.store.start(job_id, token="t", at=utcnow())
    assert rt.store.transition(job_id, from_=(JobStatus.RUNNING,), to=JobStatus.FAILED, fenced_by="other") is False
    assert rt.store.transition(job_id, from_=(JobStatus.RUNNING,), to=JobStatus.FAILED, fenced_by="t") is True
    assert _checkpoint(rt.store, job_id, "t", 1) is False
    assert rt.store.claim(job_id, token="late", at=utcnow()) is False
