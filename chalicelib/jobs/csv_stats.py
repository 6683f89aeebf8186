"""`csv-stats`: per-column count, sum, min, max and mean of a CSV object in S3, read a byte range per chunk.

The file is UTF-8 (a leading byte-order mark is dropped) with a header row, quoted as RFC 4180 says:
a field in `"` may hold the delimiter, newlines and doubled quotes `""`. Lines end in LF or CRLF.

- A column is numeric while every non-empty value is a finite number to Python's `float()`; one
  other value makes it non-numeric for good (listed in `nonNumeric`, its figures dropped). Empty
  and blank values are skipped, not counted. A numeric column with no values has count 0, sum 0
  and null min, max and mean. Blank lines are not rows. Repeated header names get `.1`, `.2`.
- A row whose number of fields differs from the header's fails the job at once, naming its line:
  its values cannot be matched to columns, and figures that silently left rows out would mislead.
  So do invalid UTF-8, broken quoting and a record over MAX_RECORD_BYTES (an unclosed quote).
- Resuming: the state holds the byte offset read so far, the incomplete last record as bytes
  (base64), the header, the row count and each column's figures, so a chunk redone from a
  checkpoint reads the same range and gets the same state. Sums add in row order with plain float
  addition: any chunk size gives the same figures, bit for bit, as one pass over the whole file.
"""

from __future__ import annotations

import base64
import csv
import math
from typing import Any

from chalicelib.jobs import JobContext, JobType, PermanentFailure, Step, read_next

DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024
MIN_CHUNK_BYTES = 1024
MAX_CHUNK_BYTES = 64 * 1024 * 1024
#: Longest record carried from one chunk to the next: it is part of every checkpoint.
MAX_RECORD_BYTES = 1024 * 1024
#: Bytes tallied per second (for the first Retry-After): 8 MB/s measured on a laptop over a 7-column
#: file with quoted text; the per-value loop dominates, an S3 range read adds little.
BYTES_PER_SECOND = 8 * 1024 * 1024
BOM = b"\xef\xbb\xbf"
#: botocore's own check of bucket names (legacy names included), so a bad one is a 400, not a failed job.
BUCKET_PATTERN = r"^[a-zA-Z0-9.\-_]{1,255}$"


class CsvStats(JobType):
    name = "csv-stats"
    payload_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["bucket", "key"],
        "properties": {
            "bucket": {"type": "string", "pattern": BUCKET_PATTERN, "description": "the S3 bucket"},
            "key": {"type": "string", "minLength": 1, "maxLength": 1024, "description": "the CSV object's key"},
            "chunkBytes": {
                "type": "integer",
                "minimum": MIN_CHUNK_BYTES,
                "maximum": MAX_CHUNK_BYTES,
                "default": DEFAULT_CHUNK_BYTES,
                "description": "bytes read per chunk",
            },
            "delimiter": {
                "type": "string",
                "minLength": 1,
                "maxLength": 1,
                "default": ",",
                "not": {"enum": ['"', "\n", "\r"]},
                "description": "the field separator",
            },
        },
    }

    def validate(self, payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        ctx.objects.check_input(payload["bucket"], payload["key"])
        return {**payload, "chunkBytes": int(payload["chunkBytes"])}  # JSON Schema lets 2048.0 be an integer

    def start(self, payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        # The size is read by the first step, not here: the worker fails a job for a step's errors.
        return {"size": None, "offset": 0, "carry": "", **_Tally(payload["delimiter"]).state()}

    def step(self, payload: dict[str, Any], state: dict[str, Any], ctx: JobContext) -> Step:
        bucket, key, offset = payload["bucket"], payload["key"], state["offset"]
        size, data = read_next(
            ctx.objects, bucket, key, size=state["size"], offset=offset, length=payload["chunkBytes"]
        )
        end = offset + len(data)
        buffer = base64.b64decode(state["carry"]) + data
        if offset == 0 and buffer.startswith(BOM):
            buffer = buffer[len(BOM) :]
        finished = end >= size
        tally = _Tally(payload["delimiter"], state)
        records, carry = _split(buffer)
        if finished and carry:
            records, carry = records + [carry], b""  # the last line needs no newline
        for record in records:
            tally.take(record)
        if len(carry) > MAX_RECORD_BYTES:
            raise PermanentFailure(
                f"line {tally.line + 1}: a record longer than {MAX_RECORD_BYTES} bytes (an unclosed quote?)"
            )
        next_state = {"size": size, "offset": end, "carry": base64.b64encode(carry).decode("ascii"), **tally.state()}
        return Step(
            state=next_state, done=end, total=size, finished=finished, stage="reading", message=f"{end} of {size} bytes"
        )

    def finish(self, payload: dict[str, Any], state: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        columns, non_numeric = {}, []
        for name, figures in zip(state["header"] or [], state["columns"], strict=True):
            if figures is None:
                non_numeric.append(name)
            else:
                columns[name] = _summary(*figures)
        return {"rows": state["rows"], "bytes": state["size"], "columns": columns, "nonNumeric": non_numeric}

    def chunk_seconds(self, payload: dict[str, Any]) -> float:
        return payload["chunkBytes"] / BYTES_PER_SECOND


def _split(data: bytes) -> tuple[list[bytes], bytes]:
    """The complete records of `data`, which begins at a record, without their LF; and the rest.

    A newline ends a record only outside quotes, that is when the record so far holds an even
    number of `"` (a doubled `""` adds two). Neither byte occurs inside a multi-byte UTF-8
    character, so bytes can be cut here before they are decoded.
    """
    lines = data.split(b"\n")
    if b'"' not in data:
        return lines[:-1], lines[-1]
    records, start, position, quotes = [], 0, 0, 0
    for line in lines[:-1]:
        quotes += line.count(b'"')
        position += len(line) + 1
        if quotes % 2 == 0:
            records.append(data[start : position - 1])
            start, quotes = position, 0
    return records, data[start:]


class _Tally:
    """The header, row count and per-column figures, taken in record by record; a JSON state."""

    def __init__(self, delimiter: str, state: dict[str, Any] | None = None):
        state = state or {"line": 0, "header": None, "rows": 0, "columns": []}
        self.delimiter = delimiter
        #: Lines read so far (a quoted newline counts), for naming a bad one.
        self.line: int = state["line"]
        self.header: list[str] | None = state["header"]
        self.rows: int = state["rows"]
        #: Per column [count, sum, min, max], or None once a value was not a number.
        self.columns: list[list | None] = [None if c is None else list(c) for c in state["columns"]]

    def state(self) -> dict[str, Any]:
        return {"line": self.line, "header": self.header, "rows": self.rows, "columns": self.columns}

    def take(self, record: bytes) -> None:
        """Take in one record (without its LF): the header first, then data rows."""
        first_line = self.line + 1
        self.line += record.count(b"\n") + 1
        fields = self._fields(record, first_line)
        if not fields:
            return
        if self.header is None:
            self.header = _unique(fields)
            self.columns = [[0, 0.0, None, None] for _ in fields]
            return
        if len(fields) != len(self.header):
            raise PermanentFailure(f"line {first_line}: {len(fields)} fields where the header has {len(self.header)}")
        self.rows += 1
        for index, value in enumerate(fields):
            figures = self.columns[index]
            if figures is None or not value.strip():
                continue
            number = _number(value)
            if number is None:
                self.columns[index] = None
                continue
            figures[0] += 1
            figures[1] += number
            if figures[2] is None or number < figures[2]:
                figures[2] = number
            if figures[3] is None or number > figures[3]:
                figures[3] = number

    def _fields(self, record: bytes, line: int) -> list[str]:
        """The record's fields; [] for a blank line."""
        try:
            text = record.decode("utf-8")
        except UnicodeDecodeError:
            raise PermanentFailure(f"line {line}: not UTF-8") from None
        if text.endswith("\r"):
            text = text[:-1]
        if not text:
            return []
        try:
            # One reader per record: broken quoting fails here instead of swallowing the next record.
            return next(csv.reader([text], delimiter=self.delimiter, strict=True))
        except csv.Error as exc:
            raise PermanentFailure(f"line {line}: {exc}") from None


def _number(value: str) -> float | None:
    """The value as a finite float, or None (inf and nan would make the figures non-JSON)."""
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _unique(names: list[str]) -> list[str]:
    """Header names made unique: a repeated `a` becomes `a.1`, `a.2` (as pandas does).

    Linear: each name resumes its suffixes where it last stopped (every `a.1`..`a.n` before is taken
    already), where starting from 1 each time took 3 s for a 16 KB header of one repeated name.
    """
    seen: set[str] = set()
    last: dict[str, int] = {}
    unique = []
    for name in names:
        candidate, n = name, last.get(name, 0)
        while candidate in seen:
            n += 1
            candidate = f"{name}.{n}"
        last[name] = n
        seen.add(candidate)
        unique.append(candidate)
    return unique


def _summary(count: int, total: float, low: float | None, high: float | None) -> dict[str, Any]:
    """A column's figures as the result shows them; a sum that overflowed is null."""
    finite = total if math.isfinite(total) else None
    mean = finite / count if count and finite is not None else None
    return {"count": count, "sum": finite, "min": low, "max": high, "mean": mean}
