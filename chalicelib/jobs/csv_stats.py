"""`csv-stats`: per-column count, sum, min, max and mean of a CSV object in S3, read a byte range per chunk.

The file is UTF-8 (a leading byte-order mark is dropped) with a header row, quoted as RFC 4180 says:
a field in `"` may hold the delimiter, newlines and doubled quotes `""`. Lines end in LF or CRLF.

- A column is numeric while every non-empty value is a finite number to Python's `float()`; one
  other value makes it non-numeric for good (listed in `nonNumeric`, its figures dropped). Empty
  and blank values are skipped, not counted. A numeric column with no values has count 0, sum 0
  and null min, max and mean. Blank lines are not rows. Repeated header names get `.1`, `.2`.
- A row whose number of fields differs from the header's fails the job at once, naming its line:
  its values cannot be matched to columns, and figures that silently left rows out would mislead.
  So do invalid UTF-8, broken quoting, a field over 131,072 characters (the csv module's
  `field_size_limit`) and a record (a line, or lines joined by a quoted newline) over
  MAX_RECORD_BYTES, wherever it lies: inside one chunk or across chunks (an unclosed quote).
- Bounded work per chunk: at most MAX_COLUMNS columns whose names take at most MAX_HEADER_BYTES of
  JSON, so the state stays under the checkpoint ceiling (MAX_STATE_BYTES) whatever the figures; a
  chunk reads `chunkBytes` (at most MAX_CHUNK_BYTES, chosen from the measured peak memory) and
  takes its records in one by one, so its memory does not grow with the number of lines in it.
- Resuming: the state holds the byte offset read so far, where the incomplete last record begins
  (the next chunk reads it again, so no record's bytes are in a checkpoint), the header, the row
  count and each column's figures, so a chunk redone from a checkpoint reads the same range and
  gets the same state. Sums add in row order with plain float addition: any chunk size gives the
  same figures, bit for bit, as one pass over the whole file.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from typing import Any

from chalicelib.jobs import JobContext, JobType, PermanentFailure, Step, read_next

DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024
MIN_CHUNK_BYTES = 1024
#: Largest chunkBytes. One chunk's peak memory over the worker's baseline is about the chunk itself
#: (`python -m bench --only memory`, a fresh process per size: x0.99-1.00 at 4, 16 and 64 MiB, of
#: short and of 3-byte lines), so a quarter of the worker's 512 MB would allow about 120 MiB. (Before
#: records were taken one by one, 16 MiB of 3-byte lines peaked at 360 MiB and 64 MiB at 1,435.)
#: Time is what binds: 64 MiB of 3-byte lines took 54-66 s here, which on a 512 MB Lambda (about
#: 0.3 vCPU: one at 1,769 MB) would outlast STALL_AFTER_SECONDS (120 s) and hold off a cancel as
#: long. 16 MiB takes 16 MiB of memory (1/32 of the worker) and 12-22 s here.
MAX_CHUNK_BYTES = 16 * 1024 * 1024
#: Longest record (a line, or lines joined by a quoted newline), the header included: a longer one
#: fails the job naming its line. The incomplete record at a chunk's end is read again by the next
#: chunk, so one chunk holds at most its chunkBytes and twice this.
MAX_RECORD_BYTES = 1024 * 1024
#: Most columns a file may have. Each column's figures are part of every checkpoint: 2,000 of the
#: longest (a 13-digit count, three 24-character floats) are 190,000 bytes of JSON, which with the
#: names (MAX_HEADER_BYTES) stays under the 256 KiB ceiling (MAX_STATE_BYTES). A result is then at
#: most 344 KB, far below Lambda's 6 MB response; a realistic one (names like `column_1234`, values
#: like 12345.67) is 208 KB, with a 116 KB state: inline, under INLINE_RESULT_BYTES (256 KiB).
#: The 110,000 columns of issue 15 made a 6.8 MB view.
MAX_COLUMNS = 2000
#: Most bytes of JSON the header's names (made unique) may take: they are in every checkpoint too.
MAX_HEADER_BYTES = 48 * 1024
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
        return {"size": None, "offset": 0, "record": 0, **_Tally(payload["delimiter"]).state()}

    def step(self, payload: dict[str, Any], state: dict[str, Any], ctx: JobContext) -> Step:
        bucket, key, record = payload["bucket"], payload["key"], state["record"]
        # Read again the incomplete record the last chunk ended in, then chunkBytes more; as much
        # more as that record is long, so a record longer than a chunk takes a few reads, not one
        # per chunkBytes of it.
        pending = state["offset"] - record
        size, buffer = read_next(
            ctx.objects,
            bucket,
            key,
            size=state["size"],
            offset=record,
            length=pending + max(payload["chunkBytes"], pending),
        )
        end = record + len(buffer)
        finished = end >= size
        tally = _Tally(payload["delimiter"], state)
        rest = tally.take_all(buffer, begin=len(BOM) if record == 0 and buffer.startswith(BOM) else 0, final=finished)
        next_state = {"size": size, "offset": end, "record": record + rest, **tally.state()}
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


def _record_ends(data: bytes, begin: int) -> Iterator[int]:
    """The offset of the LF that ends each complete record of `data[begin:]`, one at a time.

    A newline ends a record only outside quotes, that is when the record so far holds an even
    number of `"` (a doubled `""` adds two). Neither byte occurs inside a multi-byte UTF-8
    character, so bytes can be cut here before they are decoded. Lazily: a list of every line of a
    64 MiB chunk of short lines was most of its 1,447 MiB peak (issue 15).
    """
    quoted = b'"' in data
    position, quotes = begin, 0
    while (newline := data.find(b"\n", position)) != -1:
        if quoted:
            quotes += data.count(b'"', position, newline)
        position = newline + 1
        if quotes % 2 == 0:
            yield newline
            quotes = 0


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

    def take_all(self, data: bytes, *, begin: int, final: bool) -> int:
        """Take in the complete records of `data[begin:]` (all of it if `final`: the last line needs
        no newline); the offset where the incomplete rest begins."""
        start = begin
        for newline in _record_ends(data, begin):
            self.take(data, start, newline)
            start = newline + 1
        if final and start < len(data):
            self.take(data, start, len(data))
            start = len(data)
        if len(data) - start > MAX_RECORD_BYTES:
            raise PermanentFailure(
                f"line {self.line + 1}: a record longer than {MAX_RECORD_BYTES} bytes (an unclosed quote?)"
            )
        return start

    def take(self, data: bytes, start: int, end: int) -> None:
        """Take in the record `data[start:end]` (without its LF): the header first, then data rows."""
        first_line = self.line + 1
        if end - start > MAX_RECORD_BYTES:
            raise PermanentFailure(f"line {first_line}: a record longer than {MAX_RECORD_BYTES} bytes")
        record = data[start:end]
        self.line += record.count(b"\n") + 1
        fields = self._fields(record, first_line)
        if not fields:
            return
        if self.header is None:
            self.header = _header(fields, first_line)
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


def _header(fields: list[str], line: int) -> list[str]:
    """The header's names made unique; over MAX_COLUMNS or MAX_HEADER_BYTES the job fails."""
    if len(fields) > MAX_COLUMNS:
        raise PermanentFailure(
            f"line {line}: the header has {len(fields)} columns, over the limit of {MAX_COLUMNS} columns"
        )
    names = _unique(fields)
    size = len(json.dumps(names))
    if size > MAX_HEADER_BYTES:
        raise PermanentFailure(
            f"line {line}: the header's names take {size} bytes of JSON, over the limit of {MAX_HEADER_BYTES}"
        )
    return names


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
