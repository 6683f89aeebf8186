"""`word-frequency` against moto's S3: the counts of one pass over the whole text, for any chunk size."""

import base64
import json
import logging
import random
import re
from collections import Counter

import pytest

from chalicelib import errors
from chalicelib.jobs import JobContext, JobTypes
from chalicelib.jobs.testing import MemoryObjects, assert_redo_safe, context
from chalicelib.jobs.testing import run_steps as run
from chalicelib.jobs.word_frequency import DEFAULT_CHUNK_BYTES, MAX_DISTINCT_WORDS, MAX_WORD_CHARS, WordFrequency
from chalicelib.runtime import Runtime

VOCABULARY = [
    "the",
    "The",
    "THE",
    "café",
    "CAFÉ",
    "naïve",
    "日本語",
    "Straße",
    "STRASSE",
    "İstanbul",
    "ᾳ",
    "snake_case",
    "x2",
    "42",
    "don",
    "t",
]
SEPARATORS = [" ", " ", " ", ", ", ". ", "\r\n", "\r\n\r\n", " — ", "🙂", "!? ", "\t", " (", ") ", '"', "'", "-"]
#: Exactly at the limit (counted) and one over it (not counted).
LONGEST, TOO_LONG = "é" * MAX_WORD_CHARS, "b" * (MAX_WORD_CHARS + 1)


def generated_text(*, words: int = 40_000) -> bytes:
    """Prose-like UTF-8 after a BOM: multi-byte letters, emoji, punctuation, CRLF, long words, one of
    5000 characters (several chunks of 1 KiB) and words at and over MAX_WORD_CHARS. No final newline."""
    rng = random.Random(1913)
    parts = ["\ufeff"]
    for i in range(words):
        if i % 400 == 200:
            word = "".join(rng.choice("abcdeé日_9") for _ in range(rng.randint(20, 140)))
        elif i % 3:
            word = rng.choice(VOCABULARY)
        else:
            word = f"w{rng.randint(0, 4000)}"
        parts.append(word + rng.choice(SEPARATORS))
        if i == words // 2:
            parts.append(f"{'Zz' * 2500} {LONGEST} {TOO_LONG} ")
    return "".join(parts).rstrip().encode("utf-8")


def reference_counts(data: bytes) -> Counter:
    """The documented rules, in one pass over the whole text."""
    text = data.decode("utf-8", errors="replace").removeprefix("\ufeff")
    return Counter(word for word in re.findall(r"\w+", text.casefold()) if len(word) <= MAX_WORD_CHARS)


def reference_result(data: bytes, *, top: int = 10) -> dict:
    counts = reference_counts(data)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:top]
    return {
        "words": [{"word": word, "count": count} for word, count in ranked],
        "distinctWords": len(counts),
        "totalWords": sum(counts.values()),
        "bytes": len(data),
    }


def job_context(runtime: Runtime) -> JobContext:
    objects = runtime.objects.scoped(owner="o", job_id="j", input_buckets=(), work_bucket=None)
    return JobContext(job_id="j", owner="o", objects=objects, log=logging.getLogger("t"))


def carried(state: dict) -> bytes:
    return base64.b64decode(state["carry"])


def cuts_a_character(state: dict) -> bool:
    """Whether the state carries the first bytes of a UTF-8 character its range cut in two."""
    try:
        carried(state).decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


@pytest.fixture
def ctx(rt) -> JobContext:
    return job_context(rt)


@pytest.fixture
def checked(ctx):
    """A payload as POST /jobs would pass it on: schema defaults filled in, then validated."""
    job_type = WordFrequency()
    return lambda **payload: JobTypes([job_type]).check_payload(job_type, payload, ctx)


@pytest.mark.parametrize("chunk_bytes", [1024, 1025, 1031, 4099, 65536, DEFAULT_CHUNK_BYTES])
def test_counts_equal_one_pass_over_the_whole_text_for_any_chunk_size(s3, bucket, ctx, checked, chunk_bytes):
    data = generated_text()
    s3.put_object(Bucket=bucket, Key="inputs/o/text.txt", Body=data)
    payload = checked(bucket=bucket, key="inputs/o/text.txt", chunkBytes=chunk_bytes, top=1000)

    result, state, steps = run(WordFrequency(), payload, ctx)

    assert state["counts"] == reference_counts(data)
    assert result == reference_result(data, top=1000)
    assert LONGEST in state["counts"] and TOO_LONG not in state["counts"] and "zz" * 2500 not in state["counts"]
    assert [s.done for s in steps] == [min(len(data), (i + 1) * chunk_bytes) for i in range(len(steps))]
    assert {(s.total, s.stage) for s in steps} == {(len(data), "counting")}
    assert steps[-1].message == f"{len(data)} of {len(data)} bytes"
    if chunk_bytes < 2000:  # the text does test a character cut in two and a long word carried on
        assert any(cuts_a_character(s.state) for s in steps[:-1])
        assert any(len(carried(s.state)) > MAX_WORD_CHARS for s in steps[:-1])


def test_a_state_round_tripped_through_json_resumes_mid_text(settings, s3, bucket, ctx, checked):
    data = generated_text(words=8000)
    s3.put_object(Bucket=bucket, Key="inputs/o/text.txt", Body=data)
    payload = checked(bucket=bucket, key="inputs/o/text.txt", chunkBytes=1031)
    uninterrupted, _, steps = run(WordFrequency(), payload, ctx)
    # Checkpoints inside a cut character and inside the 5000-character word, resumed in a new container.
    cut = next(s.state for s in steps if cuts_a_character(s.state))
    long = next(s.state for s in steps if len(carried(s.state)) > MAX_WORD_CHARS)
    fresh = job_context(Runtime(settings))

    for checkpoint in (cut, long):
        resumed, _, _ = run(WordFrequency(), payload, fresh, state=json.loads(json.dumps(checkpoint)))

        assert resumed == uninterrupted == reference_result(data)


def test_a_chunk_redone_from_its_checkpoint_gives_the_same_state(settings, s3, bucket, ctx, checked):
    data = generated_text(words=8000)
    s3.put_object(Bucket=bucket, Key="inputs/o/text.txt", Body=data)
    payload = checked(bucket=bucket, key="inputs/o/text.txt", chunkBytes=1031)
    _, _, steps = run(WordFrequency(), payload, ctx, steps=40)
    checkpoint = json.loads(json.dumps(steps[-2].state))

    first = WordFrequency().step(payload, checkpoint, ctx)
    again = WordFrequency().step(payload, checkpoint, job_context(Runtime(settings)))

    assert checkpoint == json.loads(json.dumps(steps[-2].state))  # the step left its state alone
    assert first.state == again.state == steps[-1].state


def test_word_frequency_is_safe_to_redo():
    data = generated_text(words=3000)
    objects = MemoryObjects({("texts", "a.txt"): data})

    report = assert_redo_safe(
        WordFrequency(), {"bucket": "texts", "key": "a.txt", "chunkBytes": 1024}, context=context(objects=objects)
    )

    assert report.result == reference_result(data)


def test_an_empty_object_has_no_words(s3, bucket, ctx, checked):
    s3.put_object(Bucket=bucket, Key="inputs/o/empty.txt", Body=b"")

    result, _, steps = run(WordFrequency(), checked(bucket=bucket, key="inputs/o/empty.txt"), ctx)

    assert result == {"words": [], "distinctWords": 0, "totalWords": 0, "bytes": 0}
    assert len(steps) == 1 and steps[0].done == steps[0].total == 0 and steps[0].finished


@pytest.mark.parametrize("chunk_bytes", [1024, DEFAULT_CHUNK_BYTES])
def test_invalid_utf8_separates_words_even_across_a_range_boundary(s3, bucket, ctx, checked, chunk_bytes):
    # Bytes 1023-1024 begin a 3-byte character that "b" breaks off; \xff is never UTF-8; 日 is whole;
    # the object ends in half an emoji.
    data = b"w " * 511 + b"a" + b"\xe6\x97" + b"b\xffc\xe6\x97\xa5d e\xf0\x9f"
    s3.put_object(Bucket=bucket, Key="inputs/o/bad.txt", Body=data)

    _, state, _ = run(WordFrequency(), checked(bucket=bucket, key="inputs/o/bad.txt", chunkBytes=chunk_bytes), ctx)

    assert state["counts"] == {"w": 511, "a": 1, "b": 1, "c日d": 1, "e": 1} == reference_counts(data)


def test_too_many_distinct_words_fail_the_job_saying_so(s3, bucket, ctx, checked):
    data = " ".join(f"w{i}" for i in range(MAX_DISTINCT_WORDS + 1)).encode()
    s3.put_object(Bucket=bucket, Key="inputs/o/many.txt", Body=data)

    with pytest.raises(errors.PermanentFailure) as failure:
        run(WordFrequency(), checked(bucket=bucket, key="inputs/o/many.txt", chunkBytes=65536), ctx)

    assert failure.value.message.startswith(f"more than {MAX_DISTINCT_WORDS} distinct words, or counts over ")
    assert f"s3://{bucket}/inputs/o/many.txt" in failure.value.message


def test_counts_over_the_checkpoint_ceiling_fail_the_job_before_the_count_cap(s3, bucket, ctx, checked):
    # 3,000 distinct words of 100 characters: far under the count cap, but over 256 KiB of JSON
    data = " ".join(f"{i:05d}" + "x" * 95 for i in range(3000)).encode()
    s3.put_object(Bucket=bucket, Key="inputs/o/long.txt", Body=data)

    with pytest.raises(errors.PermanentFailure, match="bytes of JSON: they would outgrow a checkpoint"):
        run(WordFrequency(), checked(bucket=bucket, key="inputs/o/long.txt", chunkBytes=65536), ctx)


def test_the_top_words_go_by_count_then_alphabetically(s3, bucket, ctx, checked):
    s3.put_object(Bucket=bucket, Key="inputs/o/ties.txt", Body="d b, A. c B a; é e E".encode())

    top3, _, _ = run(WordFrequency(), checked(bucket=bucket, key="inputs/o/ties.txt", top=3), ctx)
    everything, _, _ = run(WordFrequency(), checked(bucket=bucket, key="inputs/o/ties.txt", top=1000), ctx)

    assert top3 == {
        "words": [{"word": "a", "count": 2}, {"word": "b", "count": 2}, {"word": "e", "count": 2}],
        "distinctWords": 6,
        "totalWords": 9,
        "bytes": 21,
    }
    assert [w["word"] for w in everything["words"]] == ["a", "b", "e", "c", "d", "é"]


def test_an_object_that_shrinks_under_the_job_fails_it_naming_the_object(s3, bucket, ctx, checked):
    s3.put_object(Bucket=bucket, Key="inputs/o/text.txt", Body=b"word " * 1000)
    payload = checked(bucket=bucket, key="inputs/o/text.txt", chunkBytes=1024)
    _, state, _ = run(WordFrequency(), payload, ctx, steps=1)
    s3.put_object(Bucket=bucket, Key="inputs/o/text.txt", Body=b"word " * 300)

    with pytest.raises(errors.PermanentFailure, match=f"s3://{bucket}/inputs/o/text.txt changed while the job read it"):
        run(WordFrequency(), payload, ctx, state=state)


def test_integers_are_cast_and_defaults_filled_in(checked):
    assert checked(bucket="b", key="inputs/o/k", top=5.0, chunkBytes=2048.0) == {
        "bucket": "b",
        "key": "inputs/o/k",
        "top": 5,
        "chunkBytes": 2048,
    }
    assert checked(bucket="b", key="inputs/o/k") == {
        "bucket": "b",
        "key": "inputs/o/k",
        "top": 10,
        "chunkBytes": DEFAULT_CHUNK_BYTES,
    }


@pytest.mark.parametrize(
    "payload",
    [
        {"bucket": "b"},
        {"key": "k"},
        {"bucket": "b/c", "key": "k"},
        {"bucket": "b", "key": ""},
        {"bucket": "b", "key": "k" * 1025},
        {"bucket": "b", "key": "k", "top": 0},
        {"bucket": "b", "key": "k", "top": 1001},
        {"bucket": "b", "key": "k", "top": 2.5},
        {"bucket": "b", "key": "k", "chunkBytes": 1023},
        {"bucket": "b", "key": "k", "chunkBytes": 16 * 1024 * 1024 + 1},
        {"bucket": "b", "key": "k", "extra": 1},
    ],
    ids=[
        "no key",
        "no bucket",
        "bad bucket name",
        "empty key",
        "long key",
        "top 0",
        "top too large",
        "top not an integer",
        "chunk too small",
        "chunk too large",
        "unknown field",
    ],
)
def test_a_bad_payload_is_refused(checked, payload):
    with pytest.raises(errors.InvalidPayload):
        checked(**payload)


def test_a_word_frequency_job_completes_through_the_worker(api, events, s3, bucket):
    data = generated_text(words=5000)
    s3.put_object(Bucket=bucket, Key="inputs/key-a/in/text.txt", Body=data)

    job_id = api.submit(
        "word-frequency", {"bucket": bucket, "key": "inputs/key-a/in/text.txt", "top": 5, "chunkBytes": 4099}
    ).json["jobId"]
    events.drain()

    job = api.get(job_id).json
    assert job["status"] == "COMPLETED" and job["error"] is None
    assert job["progress"] == 100
    assert job["progressDetail"] == {"done": len(data), "total": len(data), "stage": "counting"}
    assert job["result"] == reference_result(data, top=5)
