"""``loopml features ...``: built-in time-series features and point-in-time joins."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from loopml.cli._common import (
    JsonOption,
    WorkspaceOption,
    emit,
    open_workspace,
    transform_report,
    transform_summary,
)

app = typer.Typer(
    help="Time-series features (rolling windows, lags, recency) and point-in-time joins.",
    no_args_is_help=True,
)

EntityOption = Annotated[
    str, typer.Option("--entity", help="The entity column (a customer, a card).")
]


@app.command("rolling")
def rolling(
    name: Annotated[str, typer.Argument(help="The dataset to write a new version of.")],
    input: Annotated[str, typer.Option("--input", "-i", help="The events: NAME or NAME@VERSION.")],
    entity: EntityOption,
    time_column: Annotated[
        str, typer.Option("--time", help="The event time column (timestamp or date).")
    ],
    value: Annotated[str, typer.Option("--value", help="The numeric column to aggregate.")],
    windows: Annotated[
        str, typer.Option("--windows", help="Window lengths, such as 1h,24h,7d (s, m, h, d, w).")
    ],
    aggs: Annotated[
        str, typer.Option("--aggs", help="Aggregates out of count,sum,mean,std,min,max.")
    ] = "count,sum,mean",
    lags: Annotated[
        int, typer.Option("--lags", min=0, help="Add the N previous values as columns.")
    ] = 0,
    no_time_since: Annotated[
        bool,
        typer.Option("--no-time-since", help="Leave out the seconds since the previous event."),
    ] = False,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Per-entity rolling windows, lags and time since the previous event.

    Features use only the entity's events strictly before each event (window W: t-W to t).
    """
    started = time.perf_counter()
    with open_workspace(workspace) as ws:
        version = ws.features.rolling(
            name,
            input,
            entity=entity,
            time=time_column,
            value=value,
            windows=windows.split(","),
            aggs=aggs.split(","),
            lags=lags,
            time_since_previous=not no_time_since,
        )
    data = transform_report(version, started)
    emit(as_json, data, lambda out: out.print(transform_summary(version, data)))


@app.command("pit-join")
def pit_join(
    name: Annotated[str, typer.Argument(help="The dataset to write a new version of.")],
    events: Annotated[
        str, typer.Option("--events", help="The events or labels: NAME or NAME@VERSION.")
    ],
    features: Annotated[
        str, typer.Option("--features", help="The feature table: NAME or NAME@VERSION.")
    ],
    entity: EntityOption,
    time_column: Annotated[str, typer.Option("--time", help="The events' time column.")],
    feature_time: Annotated[
        str | None,
        typer.Option(
            "--feature-time", help="The features' time column; by default the same as --time."
        ),
    ] = None,
    columns: Annotated[
        str | None,
        typer.Option(
            "--columns", help="Feature columns to add, as a,b; by default all but entity and time."
        ),
    ] = None,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Join each event to its entity's latest feature row from strictly before it."""
    started = time.perf_counter()
    with open_workspace(workspace) as ws:
        version = ws.features.point_in_time_join(
            name,
            events,
            features,
            entity=entity,
            time=time_column,
            feature_time=feature_time,
            columns=[c.strip() for c in columns.split(",")] if columns is not None else None,
        )
    data = transform_report(version, started)
    emit(as_json, data, lambda out: out.print(transform_summary(version, data)))
