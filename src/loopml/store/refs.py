"""Looking up a numbered, content-addressed version by reference, for every record kind.

A reference names a series (a dataset, a model) and optionally one of its versions:
``NAME`` or ``NAME@latest`` (the newest), ``NAME@3`` (a number) or ``NAME@<hash prefix>``
(at least 4 hex characters of the version's content id).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from loopml.errors import InputError, NotFound


def find_version(
    conn: Connection,
    versions: sa.Table,
    series: sa.Table,
    series_key: str,
    name: str,
    version: str | None,
    *,
    what: str,
) -> Any:
    """The row of ``versions`` that ``name`` and ``version`` (None: latest) name.

    Args:
        conn: a metadata connection.
        versions: the versions table (columns ``number`` and ``id``).
        series: the table of series, keyed by ``name``.
        series_key: the versions table's column naming the series.
        name: the series.
        version: a number, a hash prefix, or None for the newest.
        what: the kind, for messages (``dataset``, ``model``).

    Raises:
        NotFound: no such series or version.
        InputError: a hash prefix matches several versions.
    """
    listing = f"`loopml {'data' if what == 'dataset' else what} ls` lists them"
    query = sa.select(versions).where(versions.c[series_key] == name)
    if version is None:
        row = conn.execute(query.order_by(versions.c.number.desc()).limit(1)).first()
        if row is None:
            raise NotFound(f"{what} {name!r} does not exist", hint=listing)
        return row
    if version.isascii() and version.isdigit() and len(version) < 9:
        row = conn.execute(query.where(versions.c.number == int(version))).first()
        if row:
            return row
    if len(version) >= 4 and all(c in "0123456789abcdef" for c in version.lower()):
        rows = conn.execute(
            query.where(versions.c.id.startswith(version.lower())).order_by(
                versions.c.number.desc()
            )
        ).all()
        if len({row.id for row in rows}) > 1:
            raise InputError(
                f"'{name}@{version}' matches several versions", hint="give more of the hash"
            )
        if rows:
            return rows[0]
    if not conn.execute(sa.select(series.c.name).where(series.c.name == name)).first():
        raise NotFound(f"{what} {name!r} does not exist", hint=listing)
    raise NotFound(
        f"{what} {name!r} has no version {version!r}",
        hint=f"`loopml {'data' if what == 'dataset' else what} show {name}` lists its versions",
    )
