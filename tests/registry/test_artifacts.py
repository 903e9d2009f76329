"""Artifacts: safe formats per flavor, skops loading only trusted types, integrity checks
on load, and ONNX exports that score like the model."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
from tests.train._data import holdout_rows, ingest, tabular

from loopml.errors import InputError, IntegrityError
from loopml.registry.predictor import as_frame
from loopml.train.onnx_export import onnx_feeds
from loopml.train.preprocess import FeaturePlan
from loopml.workspace import Workspace


@pytest.fixture
def data(lws: Workspace, tmp_path: Path) -> str:
    ingest(lws, "tx", tabular(rows=800), tmp_path / "data")
    lws.features.split("tx_split", "tx", by="stratified", column="y", test=0.25, seed=1)
    return "tx_split"


def test_a_custom_type_loads_only_when_trusted(
    lws: Workspace, data: str, trainers_module: tuple[Path, str]
) -> None:
    folder, module = trainers_module
    result = lws.train(
        "noisy",
        data,
        "y",
        model=f"python:{module}:fit_noisy",
        params={"noise": 0.2},
        code_folder=folder,
    )
    assert result.version.artifacts["model"]["format"] == "skops"
    kind = f"{module}.NoisyClassifier"
    with pytest.raises(InputError) as caught:
        lws.models.load("noisy@1")
    assert kind in str(caught.value)
    assert "trust" in str(caught.value)
    # Trusting another name is not enough.
    with pytest.raises(InputError, match=kind):
        lws.models.load("noisy@1", trust=[f"{module}.Other"])

    predictor = lws.models.load("noisy@1", trust=[kind])
    estimator = predictor.model.steps[-1][1]
    assert type(estimator).__name__ == "NoisyClassifier"
    assert estimator.noise == 0.2
    test = holdout_rows(lws, data)
    from sklearn.metrics import roc_auc_score

    truth = np.asarray(test["y"].to_pylist())
    assert result.metrics["roc_auc"] == pytest.approx(
        roc_auc_score(truth, predictor.scores(test)), abs=2e-6
    )


def _object_path(ws: Workspace, sha256: str) -> Path:
    path = ws.ctx.artifacts.local_path(sha256)
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)  # objects are stored read-only
    return path


def test_a_tampered_artifact_refuses_to_load(lws: Workspace, data: str) -> None:
    lws.train("m", data, "y", model="sklearn:sklearn.linear_model.LogisticRegression")
    version = lws.models.get("m@1")
    sha = version.artifacts["model"]["sha256"]
    path = _object_path(lws, sha)
    original = path.read_bytes()
    damaged = bytearray(original)
    damaged[len(damaged) // 2] ^= 0xFF
    path.write_bytes(bytes(damaged))

    with pytest.raises(IntegrityError) as caught:
        lws.models.load("m@1")
    message = str(caught.value)
    assert "m@1 model artifact" in message and sha[:12] in message
    assert "corrupt" in message

    # Truncated: the same refusal.
    path.write_bytes(original[: len(original) // 3])
    with pytest.raises(IntegrityError, match=sha[:12]):
        lws.models.load("m@1")

    # Restored, it loads again.
    path.write_bytes(original)
    assert lws.models.load("m@1").scores(holdout_rows(lws, data)).shape[0] > 0


def test_a_tampered_preprocess_artifact_refuses_to_load(lws: Workspace, data: str) -> None:
    lws.train("b", data, "y", model="lightgbm", params={"n_estimators": 10})
    version = lws.models.get("b@1")
    sha = version.artifacts["preprocess"]["sha256"]
    path = _object_path(lws, sha)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(IntegrityError, match=rf"b@1 preprocess artifact \({sha[:12]}\)"):
        lws.models.load("b@1")


@pytest.mark.parametrize(
    ("model", "params", "formats"),
    [
        ("lightgbm", {"n_estimators": 10}, {"model": "lightgbm", "preprocess": "skops"}),
        ("xgboost", {"n_estimators": 10}, {"model": "xgboost", "preprocess": "skops"}),
        ("torch-mlp", {"epochs": 2, "hidden": [6, 4]}, {"model": "npz", "preprocess": "skops"}),
    ],
)
def test_boosters_and_the_mlp_are_stored_in_their_own_formats(
    lws: Workspace, data: str, model: str, params: dict[str, object], formats: dict[str, str]
) -> None:
    version = lws.train("native", data, "y", model=model, params=params).version
    assert {role: a["format"] for role, a in version.artifacts.items()} == formats
    raw = lws.ctx.artifacts.read_bytes(version.artifacts["model"]["sha256"])
    if model == "lightgbm":
        assert raw.startswith(b"tree\n")
    elif model == "xgboost":
        assert raw[:1] == b"{"  # UBJSON object
    else:
        assert raw[:2] == b"PK"  # a NumPy .npz archive
        arch = version.meta["arch"]
        assert arch["hidden"] == [6, 4] and arch["outputs"] == 1 and arch["task"] == "binary"
        # Not a tree model: x1, x2, and cat one-hot over its training categories
        # (a missing value is a category of its own).
        table = lws.data.read(data)
        cats, splits = table["cat"].to_pylist(), table["split"].to_pylist()
        fit_cats = {c for c, s in zip(cats, splits, strict=True) if s != "test"}
        assert arch["inputs"] == 2 + len(fit_cats)
        import io

        with np.load(io.BytesIO(raw), allow_pickle=False) as arrays:
            shapes = {key: arrays[key].shape for key in arrays.files}
        assert shapes["0.weight"] == (6, arch["inputs"])
        assert shapes["6.weight"] == (1, 4)
    # It loads and scores.
    scores = lws.models.load(version.ref).scores(holdout_rows(lws, data))
    assert np.all((scores >= 0) & (scores <= 1))


@pytest.mark.parametrize(
    "model",
    [
        "sklearn:sklearn.linear_model.LogisticRegression",
        "sklearn:sklearn.ensemble.RandomForestClassifier",
    ],
)
def test_onnx_export_scores_like_the_model(lws: Workspace, data: str, model: str) -> None:
    params = {"n_estimators": 20, "max_depth": 4} if "Forest" in model else {}
    version = lws.train("exported", data, "y", model=model, params=params, onnx=True).version
    assert version.artifacts["onnx"]["format"] == "onnx", version.meta.get("onnx")
    assert version.meta["onnx"].startswith("exported")

    import onnxruntime

    session = onnxruntime.InferenceSession(
        lws.ctx.artifacts.read_bytes(version.artifacts["onnx"]["sha256"]),
        providers=["CPUExecutionProvider"],
    )
    features = version.meta["features"]
    plan = FeaturePlan(
        tuple(features["numeric"]), tuple(features["one_hot"]), tuple(features["ordinal"])
    )
    test = holdout_rows(lws, data)
    frame = as_frame(test, plan.columns, [*plan.one_hot, *plan.ordinal])
    outputs = session.run(None, onnx_feeds(frame, plan))
    probabilities = np.asarray(outputs[1], dtype=np.float64)[:, 1]
    expected = lws.models.load(version.ref).scores(test)
    assert np.max(np.abs(probabilities - expected)) < 1e-3
    labels = np.asarray(outputs[0]).ravel().astype(int)
    assert np.mean(labels == (expected >= 0.5)) > 0.99


def test_a_booster_is_not_exported_to_onnx_and_the_version_says_why(
    lws: Workspace, data: str
) -> None:
    version = lws.train(
        "boosted", data, "y", model="lightgbm", params={"n_estimators": 5}, onnx=True
    ).version
    assert "onnx" not in version.artifacts
    assert version.meta["onnx"].startswith("not exported")
    assert "lightgbm" in version.meta["onnx"]
