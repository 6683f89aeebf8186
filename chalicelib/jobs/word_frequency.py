"""`word-frequency`: the most frequent words of a UTF-8 text object in S3, read a byte range per chunk.

The README's worked example of a job type of your own: it imports nothing but `chalicelib.jobs`.

- A word is a run of word characters (`\\w+`) of the case-folded text (`str.casefold()`: "Straße"
  and "STRASSE" are one word). Bytes that are not UTF-8 read as U+FFFD, which ends a word; a leading
  byte-order mark is dropped. Words longer than MAX_WORD_CHARS (base64 blobs and such) are not counted.
- Resuming: the state holds the byte offset read so far, the bytes not yet counted (base64: the last
  word, which may go on in the next range, and a UTF-8 character the range cut in two) and the
  counts. A chunk redone from a checkpoint reads the same range and gets the same state, and any
  chunk size gives the same counts as one pass over the whole text.
- The counts are part of every checkpoint, which must stay under 256 KiB of JSON: more than
  MAX_DISTINCT_WORDS distinct words fail the job. A type that needs more would spill partial counts
  to objects of its own (`ctx.objects.put`) and merge them in `finish`.
"""

from __future__ import annotations

import base64
import codecs
import json
import re
from collections import Counter
from typing import Any

from chalicelib.jobs import MAX_STATE_BYTES, JobContext, JobType, PermanentFailure, Step, read_next

DEFAULT_CHUNK_BYTES = 1024 * 1024
MIN_CHUNK_BYTES = 1024
MAX_CHUNK_BYTES = 16 * 1024 * 1024
MAX_WORD_CHARS = 100
#: The counts of 15000 words of Vim's manual are 211 KB of JSON, inside the 256 KiB checkpoint ceiling;
#: longer words, or non-ASCII ones (JSON writes é as `\u00e9`), take more: the size is checked too.
MAX_DISTINCT_WORDS = 15_000
#: Bytes counted per second (for the first Retry-After): 21 MiB/s measured (CPU time, median of ten
#: runs, 1 MiB chunks) over the 9.5 MB of Vim's manual; the regex takes most of it.
BYTES_PER_SECOND = 20 * 1024 * 1024
BOM = b"\xef\xbb\xbf"
#: botocore's own check of bucket names (legacy names included), so a bad one is a 400, not a failed job.
BUCKET_PATTERN = r"^[a-zA-Z0-9.\-_]{1,255}$"
WORD = re.compile(r"\w+")


class WordFrequency(JobType):
    name = "word-frequency"
    payload_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["bucket", "key"],
        "properties": {
            "bucket": {"type": "string", "pattern": BUCKET_PATTERN, "description": "the S3 bucket"},
            "key": {"type": "string", "minLength": 1, "maxLength": 1024, "description": "the text object's key"},
            "top": {
                "type": "integer",
                "minimum": 1,
                "maximum": 1000,
                "default": 10,
                "description": "how many of the most frequent words the result lists",
            },
            "chunkBytes": {
                "type": "integer",
                "minimum": MIN_CHUNK_BYTES,
                "maximum": MAX_CHUNK_BYTES,
                "default": DEFAULT_CHUNK_BYTES,
                "description": "bytes read per chunk",
            },
        },
    }

    def validate(self, payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        ctx.objects.check_input(payload["bucket"], payload["key"])
        # JSON Schema lets 2048.0 be an integer.
        return {**payload, "top": int(payload["top"]), "chunkBytes": int(payload["chunkBytes"])}

    def start(self, payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        # The size is read by the first step, not here: the worker fails a job for a step's errors.
        return {"size": None, "offset": 0, "carry": "", "counts": {}, "words": 0}

    def step(self, payload: dict[str, Any], state: dict[str, Any], ctx: JobContext) -> Step:
        bucket, key, offset = payload["bucket"], payload["key"], state["offset"]
        size, data = read_next(
            ctx.objects, bucket, key, size=state["size"], offset=offset, length=payload["chunkBytes"]
        )
        end = offset + len(data)
        if offset == 0:
            data = data.removeprefix(BOM)
        finished = end >= size
        text, cut = _decode(base64.b64decode(state["carry"]) + data, final=finished)
        text = text.casefold()
        words = WORD.findall(text)
        # A word that touches the end of the range may go on in the next one: count it then.
        last = words.pop() if words and not finished and text.endswith(words[-1]) else ""
        counted = [word for word in words if len(word) <= MAX_WORD_CHARS]
        counts = Counter(state["counts"])  # a copy: the step must leave its state as it found it
        counts.update(counted)
        if len(counts) > MAX_DISTINCT_WORDS or len(json.dumps(counts)) > MAX_STATE_BYTES - 1024:
            raise PermanentFailure(
                f"more than {MAX_DISTINCT_WORDS} distinct words, or counts over "
                f"{MAX_STATE_BYTES - 1024} bytes of JSON: they would outgrow a checkpoint "
                f"(at byte {end} of s3://{bucket}/{key})"
            )
        # A word already too long is carried cut to one character over the limit: it stays too long
        # whatever follows, and the carry stays small. casefold() is idempotent: it folds to itself again.
        carry = last[: MAX_WORD_CHARS + 1].encode() + cut
        next_state = {
            "size": size,
            "offset": end,
            "carry": base64.b64encode(carry).decode("ascii"),
            "counts": dict(counts),
            "words": state["words"] + len(counted),
        }
        return Step(
            state=next_state,
            done=end,
            total=size,
            finished=finished,
            stage="counting",
            message=f"{end} of {size} bytes",
        )

    def finish(self, payload: dict[str, Any], state: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        ranked = sorted(state["counts"].items(), key=lambda item: (-item[1], item[0]))
        return {
            "words": [{"word": word, "count": count} for word, count in ranked[: payload["top"]]],
            "distinctWords": len(state["counts"]),
            "totalWords": state["words"],
            "bytes": state["size"],
        }

    def chunk_seconds(self, payload: dict[str, Any]) -> float:
        return payload["chunkBytes"] / BYTES_PER_SECOND


def _decode(data: bytes, *, final: bool) -> tuple[str, bytes]:
    """The text of `data`; and, unless final, the bytes of a UTF-8 character cut off at its end."""
    # The incremental decoder holds back those bytes instead of replacing them, as one pass would.
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    return decoder.decode(data, final), decoder.getstate()[0]
