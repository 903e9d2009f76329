"""JSON Lines files (gzip too), parsed by Arrow in blocks."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pyarrow as pa

from loopml.data.contract import Contract
from loopml.data.sources._base import (
    BATCH_ROWS,
    FileSource,
    SourceBatch,
    _first_line,
    _open_text,
)
from loopml.errors import InputError


class JSONLinesSource(FileSource):
    """JSON Lines files (gzip too), parsed by Arrow in blocks.

    A block that fails to parse is re-read line by line, so one bad line costs only
    its own row.
    """

    _BLOCK_BYTES = 8 << 20

    def __init__(self, files: list[str], contract: Contract | None) -> None:
        super().__init__(files)
        self.contract = contract
        self.schema: pa.Schema | None = contract.arrow_schema() if contract else None
        # Fields beyond the contract are taken (typed by inference) from the first
        # block only when the contract allows them; after it the schema is fixed.
        self._open_schema = contract is None or contract.allow_extra_columns

    def batches(self) -> Iterator[SourceBatch]:
        for file in self.files:
            accepted = 0
            row = 0
            for lines in self._blocks(file):
                if row == 0:
                    self._check_fields(file, lines)
                table = self._parse_block(file, lines, row)
                row += len(lines)
                for batch in table.to_batches(BATCH_ROWS):
                    yield SourceBatch(batch, file, accepted)
                    accepted += batch.num_rows
            if row == 0:
                raise InputError(f"{file}: the file is empty", hint="remove it from the source")

    def _check_fields(self, file: str, lines: list[bytes]) -> None:
        """Fail early when a later file's first record has fields the schema lacks."""
        import orjson

        if self.schema is None or file == self.files[0]:
            return
        for line in lines:
            if line.strip():
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError:
                    return  # the line is quarantined as it is parsed
                if isinstance(record, dict) and (extra := set(record) - set(self.schema.names)):
                    raise InputError(
                        f"{file}: its fields ({', '.join(sorted(extra))}) are not in "
                        f"{self.files[0]}'s",
                        hint="ingest files with different fields as separate datasets",
                    )
                return

    def _blocks(self, file: str) -> Iterator[list[bytes]]:
        try:
            with _open_text(file) as handle:
                block: list[bytes] = []
                size = 0
                for line in handle:
                    block.append(line)
                    size += len(line)
                    if size >= self._BLOCK_BYTES:
                        yield block
                        block, size = [], 0
                if block:
                    yield block
        except (OSError, EOFError) as exc:
            raise InputError(f"{file}: cannot be read: {exc}") from exc

    def _parse_block(self, file: str, lines: list[bytes], first_row: int) -> pa.Table:
        import pyarrow.json as pj

        # Once the schema is fixed (declared, or inferred from the first block), a field
        # outside it is an error for the line, never silently dropped.
        options = pj.ParseOptions(
            explicit_schema=self.schema,
            unexpected_field_behavior="infer" if self._open_schema else "error",
        )
        blank = [i for i, line in enumerate(lines) if not line.strip()]
        try:
            if blank:
                raise pa.ArrowInvalid("blank lines")
            table = pj.read_json(io.BytesIO(b"".join(lines)), parse_options=options)
            if self._open_schema:
                self.schema, self._open_schema = table.schema, False
            elif table.schema != self.schema:
                table = table.cast(self.schema)
            return table
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            if self._open_schema:
                self._infer_schema(lines)
            return self._parse_lines(file, lines, first_row)

    def _infer_schema(self, lines: list[bytes]) -> None:
        """Fix the schema from the first line that parses on its own (the block did not)."""
        import pyarrow.json as pj

        options = pj.ParseOptions(explicit_schema=self.schema, unexpected_field_behavior="infer")
        for line in lines:
            if line.strip():
                try:
                    self.schema = pj.read_json(io.BytesIO(line), parse_options=options).schema
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                    continue
                self._open_schema = False
                return

    def _parse_lines(self, file: str, lines: list[bytes], first_row: int) -> pa.Table:
        import orjson
        import pyarrow.json as pj

        good: list[bytes] = []
        for i, line in enumerate(lines):
            row = first_row + i + 1
            if not line.strip():
                self.reject(file, row, "blank line", "the line is empty", None)
                continue
            try:
                value = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                reason = (
                    "undecodable bytes: not UTF-8"
                    if "utf-8" in str(exc).lower()
                    else "invalid JSON"
                )
                self.reject(file, row, reason, str(exc), line.decode("utf-8", "replace")[:2000])
                continue
            if not isinstance(value, dict):
                self.reject(
                    file,
                    row,
                    "not a JSON object",
                    f"got {type(value).__name__}",
                    line.decode("utf-8", "replace")[:2000],
                )
                continue
            if self.schema is not None:
                try:
                    options = pj.ParseOptions(
                        explicit_schema=self.schema,
                        unexpected_field_behavior="error",
                    )
                    pj.read_json(io.BytesIO(line), parse_options=options).cast(self.schema)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
                    self.reject(
                        file,
                        row,
                        _json_reason(str(exc)),
                        _first_line(exc),
                        line.decode("utf-8", "replace")[:2000],
                    )
                    continue
            good.append(line if line.endswith(b"\n") else line + b"\n")
        if not good:
            return pa.table(
                {f.name: pa.array([], f.type) for f in self.schema} if self.schema else {}
            )
        options = pj.ParseOptions(explicit_schema=self.schema, unexpected_field_behavior="error")
        table = pj.read_json(io.BytesIO(b"".join(good)), parse_options=options)
        return table.cast(self.schema)


def _json_reason(message: str) -> str:
    if "unexpected field" in message.lower():
        return "field not in the schema"
    return "value of the wrong type"
