"""The rows of a SQL query against any SQLAlchemy URL, fetched in chunks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from loopml.data.contract import Contract
from loopml.data.sources._base import (
    BATCH_ROWS,
    Source,
    SourceBatch,
    _first_line,
    check_columns,
    coerce,
)
from loopml.errors import InputError


class SQLSource(Source):
    """The rows of a SQL query against any SQLAlchemy URL, fetched in chunks."""

    def __init__(self, url: str, query: str, contract: Contract | None) -> None:
        super().__init__()
        import sqlalchemy as sa

        try:
            self.url = sa.engine.make_url(url)
        except sa.exc.ArgumentError as exc:
            raise InputError(
                "--from is not a database URL",
                hint="for example sqlite:///app.db or postgresql+psycopg://host/db",
            ) from exc
        self.query = query
        self.contract = contract

    @property
    def description(self) -> str:
        safe = self.url.render_as_string(hide_password=True)
        return f"{safe} :: {self.query}"

    def batches(self) -> Iterator[SourceBatch]:
        import sqlalchemy as sa

        file = "query"
        try:
            engine = sa.create_engine(self.url)
        except (sa.exc.ArgumentError, ModuleNotFoundError) as exc:
            raise InputError(
                f"cannot connect to {self.url.render_as_string(hide_password=True)}: {exc}"
            ) from exc
        accepted = 0
        row = 0
        try:
            with engine.connect() as conn:
                result = conn.execution_options(stream_results=True).execute(sa.text(self.query))
                names = list(result.keys())
                if self.contract is not None:
                    check_columns(file, names, self.contract)
                while chunk := result.fetchmany(BATCH_ROWS):
                    columns = list(zip(*chunk, strict=True))
                    batch = pa.RecordBatch.from_arrays(
                        [_to_arrow(column) for column in columns], names=names
                    )
                    good = coerce(self, file, batch, row, accepted, self.contract)
                    row += batch.num_rows
                    if good.num_rows:
                        yield SourceBatch(good, file, accepted)
                        accepted += good.num_rows
        except sa.exc.SQLAlchemyError as exc:
            raise InputError(
                f"the query failed: {_first_line(exc)}", hint="check the SQL and the database URL"
            ) from exc
        finally:
            engine.dispose()


def _to_arrow(values: tuple[Any, ...]) -> pa.Array:
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else str(v) for v in values], pa.string())
