"""ONNX export (extra ``loopml[onnx]``) of scikit-learn models, checked against the original.

The whole Pipeline (preprocessing and estimator) becomes one graph with one input per
feature column, so a runtime needs nothing else. An export is kept only when
onnxruntime reproduces the model's scores on sample rows; otherwise, or when the
converter does not support the model, the version records why there is no ONNX file.
"""

from __future__ import annotations

from typing import Any

from loopml.train import preprocess, trainers

# Float32 arithmetic in the graph: scores may differ from the float64 original by this.
TOLERANCE = 1e-3
_SAMPLE_ROWS = 256


def export(
    spec: trainers.TrainerSpec,
    fitted: Any,
    transformer: Any,
    plan: preprocess.FeaturePlan,
    sample: Any = None,
) -> tuple[Any, str]:
    """The ONNX model, or None, and a note saying what happened."""
    if spec.flavor not in {"sklearn", "custom"}:
        return (
            None,
            f"not exported: the ONNX converters here take scikit-learn models, not {spec.flavor}",
        )
    try:
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    except ModuleNotFoundError:
        return None, "not exported: pip install 'loopml[onnx]'"
    from sklearn.pipeline import Pipeline

    pipeline = Pipeline([("preprocess", transformer), ("model", fitted)])
    text = set(plan.one_hot) | set(plan.ordinal)
    initial = [
        (c, StringTensorType([None, 1]) if c in text else FloatTensorType([None, 1]))
        for c in plan.columns
    ]
    try:
        graph = convert_sklearn(
            pipeline,
            initial_types=initial,
            target_opset={"": 17, "ai.onnx.ml": 3},
            options={id(fitted): {"zipmap": False}}
            if spec.task in {"binary", "multiclass"}
            else None,
        )
    except Exception as exc:  # the converter raises many kinds for unsupported parts
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        return None, f"not exported: the converter does not support it ({reason})"
    if sample is not None:
        mismatch = check(graph, pipeline, spec.task, sample, plan)
        if mismatch is not None:
            return None, f"not exported: ONNX scores differ from the model's by {mismatch:.2g}"
    return graph, "exported; scores match the model within 1e-3 on sample rows"


def check(
    graph: Any, pipeline: Any, task: str, frame: Any, plan: preprocess.FeaturePlan
) -> float | None:
    """The largest score difference above TOLERANCE between ONNX and the model, else None."""
    import numpy as np
    import onnxruntime

    frame = frame.head(_SAMPLE_ROWS)
    session = onnxruntime.InferenceSession(
        graph.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    feeds = onnx_feeds(frame, plan)
    outputs = session.run(None, feeds)
    expected = trainers.sklearn_scores(pipeline, task, frame)
    if task in {"binary", "multiclass"}:
        probabilities = np.asarray(outputs[1], dtype=np.float64)
        got = probabilities[:, 1] if task == "binary" else probabilities
    elif task == "anomaly":
        got = -np.asarray(outputs[1], dtype=np.float64).ravel()
    else:
        got = np.asarray(outputs[0], dtype=np.float64).ravel()
    difference = float(np.max(np.abs(got - expected))) if len(frame) else 0.0
    return difference if difference > TOLERANCE else None


def onnx_feeds(frame: Any, plan: preprocess.FeaturePlan) -> dict[str, Any]:
    """One (n, 1) array per feature column, as the graph's inputs expect."""
    import numpy as np

    text = set(plan.one_hot) | set(plan.ordinal)
    feeds = {}
    for column in plan.columns:
        values = frame[column].to_numpy()
        if column in text:
            feeds[column] = np.asarray(values, dtype=object).reshape(-1, 1)
        else:
            feeds[column] = values.astype(np.float32).reshape(-1, 1)
    return feeds
