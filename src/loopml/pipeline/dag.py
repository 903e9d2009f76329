"""The spec compiled into a DAG of steps: one per source, feature and split, and training.

Each step makes one dataset version; it depends on the steps that make the datasets
it reads. Datasets a step reads that no step makes must already be in the workspace.
"""

from __future__ import annotations

import graphlib
from dataclasses import dataclass, field
from typing import Any

from loopml.errors import SpecError
from loopml.pipeline.spec import Resources, Spec, StepOptions

# The training step's name; it makes a model version, not a dataset.
TRAIN_STEP = "train"


@dataclass(frozen=True)
class Step:
    """One unit of work: ``kind`` with ``params`` makes dataset ``output`` from ``reads``.

    Attributes:
        name: the step's name (its output dataset's name).
        kind: ingest, sql, python, rolling, pit_join, split or train.
        params: what the step does, as plain JSON-ready data.
        reads: the datasets it reads, in the order its kind expects them.
        needs: the steps it waits for (the ones making what it reads).
        options: retries, backoff, resources, heavy.
    """

    name: str
    kind: str
    params: dict[str, Any]
    reads: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    options: StepOptions = field(default_factory=StepOptions)

    @property
    def output(self) -> str:
        """The dataset this step makes."""
        return self.name


def compile_spec(spec: Spec) -> list[Step]:
    """The spec's steps in a dependency order.

    Raises:
        SpecError: a cycle (naming its steps), or a split with no input.
    """
    steps: dict[str, Step] = {}
    for name, source in spec.sources.items():
        params = source.model_dump(
            by_alias=True,
            exclude={"retries", "backoff", "resources", "heavy"},
            exclude_none=True,
        )
        steps[name] = Step(name, "ingest", params, options=_options(source, spec.resources))
    for name, feature in spec.features.items():
        if feature.rolling is not None:
            params = feature.rolling.model_dump()
        elif feature.pit_join is not None:
            params = feature.pit_join.model_dump()
        else:
            params = {feature.kind: getattr(feature, feature.kind), "params": feature.params}
        steps[name] = Step(
            name,
            feature.kind,
            params,
            tuple(feature.depends_on()),
            options=_options(feature, spec.resources),
        )
    if spec.split is not None:
        split = spec.split
        if split.input is None:
            raise SpecError("split.input: which dataset to split is missing")
        output = split.output or f"{split.input}_split"
        if output in steps:
            raise SpecError(f"split.output: {output!r} is already made by another step")
        params = split.model_dump(
            exclude={"retries", "backoff", "resources", "heavy", "input", "output"},
            exclude_none=True,
        )
        steps[output] = Step(
            output, "split", params, (split.input,), options=_options(split, spec.resources)
        )
    if spec.train is not None:
        train = spec.train
        trains_on = train.input or (
            (spec.split.output or f"{spec.split.input}_split") if spec.split else None
        )
        if trains_on is None:
            raise SpecError("train.input: which dataset to train on is missing")
        if TRAIN_STEP in steps:
            raise SpecError(f"a dataset is named {TRAIN_STEP!r}, the training step's name")
        params = train.model_dump(
            exclude={"retries", "backoff", "resources", "heavy", "input", "schedule"},
            exclude_none=True,
        )
        params["name"] = spec.model_name
        params["gpus"] = _options(train, spec.resources).resources.gpus
        params["cpus"] = _options(train, spec.resources).resources.cpus
        if spec.evaluate is not None:
            # Evaluating (and declaring the gates) is part of making the version.
            params["evaluate"] = spec.evaluate.model_dump()
        steps[TRAIN_STEP] = Step(
            TRAIN_STEP, "train", params, (trains_on,), options=_options(train, spec.resources)
        )
    made = set(steps)
    linked = {
        name: Step(
            step.name,
            step.kind,
            step.params,
            step.reads,
            tuple(dict.fromkeys(r for r in step.reads if r in made)),
            step.options,
        )
        for name, step in steps.items()
    }
    for step in linked.values():
        if step.name in step.reads:
            raise SpecError(f"step {step.name} reads its own output", hint="give it another name")
    sorter = graphlib.TopologicalSorter({name: step.needs for name, step in linked.items()})
    try:
        order = list(sorter.static_order())
    except graphlib.CycleError as exc:
        cycle = " -> ".join(exc.args[1])
        raise SpecError(
            f"the steps form a cycle: {cycle}", hint="a step cannot depend on itself through others"
        ) from exc
    return [linked[name] for name in order]


def _options(options: StepOptions, defaults: Resources) -> StepOptions:
    """A step's options; without resources of its own it gets the spec's."""
    resources = options.resources if "resources" in options.model_fields_set else defaults
    return StepOptions(
        retries=options.retries, backoff=options.backoff, resources=resources, heavy=options.heavy
    )
