"""skops artifacts are canonical (equal models give equal bytes, so equal content ids),
and loopml's direct writer gives exactly what skops' public ``dumps`` canonicalised does."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
import skops.io
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from loopml.registry import formats


def _first_canonicaliser(data: bytes) -> bytes:
    """The canonicaliser loopml shipped before the direct writer (commit 05704d2), kept
    verbatim as the reference: stored artifacts' ids depend on these exact bytes."""
    import re

    with zipfile.ZipFile(io.BytesIO(data)) as source:
        schema = json.loads(source.read("schema.json"))
        files = {name: source.read(name) for name in source.namelist() if name != "schema.json"}
    numbers: dict[int, int] = {}

    def number(old: int) -> int:
        return numbers.setdefault(old, len(numbers) + 1)

    def walk(node: object) -> object:
        if isinstance(node, dict):
            renamed = {key: walk(value) for key, value in node.items()}
            if isinstance(node.get("__id__"), int):
                renamed["__id__"] = number(node["__id__"])
            file = node.get("file")
            if isinstance(file, str) and re.fullmatch(r"\d+\.npy", file):
                renamed["file"] = f"{number(int(file[:-4]))}.npy"
            return renamed
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    schema = walk(schema)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as target:
        entries = {"schema.json": json.dumps(schema, separators=(",", ":")).encode()}
        for name, content in files.items():
            stem = name[:-4] if name.endswith(".npy") else ""
            entries[f"{number(int(stem))}.npy" if stem.isdigit() else name] = content
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            target.writestr(info, entries[name])
    return out.getvalue()


def _x_y() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 4))
    x[:, 3] = rng.integers(0, 3, 300)
    return x, (x[:, 0] + x[:, 3] > 0.5).astype(int)


def _models() -> list[object]:
    x, y = _x_y()
    pipeline = Pipeline(
        [
            (
                "preprocess",
                ColumnTransformer(
                    [
                        ("scale", StandardScaler(), [0, 1, 2]),
                        ("onehot", OneHotEncoder(handle_unknown="ignore"), [3]),
                    ]
                ),
            ),
            ("model", LogisticRegression()),
        ]
    )
    return [
        pipeline.fit(x, y),
        HistGradientBoostingClassifier(max_iter=5, random_state=0).fit(x, y),
        RandomForestRegressor(n_estimators=3, random_state=0).fit(x, x[:, 0]),
    ]


@pytest.mark.parametrize("index", range(3))
def test_the_direct_writer_gives_the_canonicalised_public_bytes(index: int) -> None:
    model = _models()[index]
    direct = formats.skops_bytes(model)
    public = bytes(skops.io.dumps(model))
    assert direct == formats.canonical_skops(public) == _first_canonicaliser(public)
    x, _ = _x_y()
    loaded = formats.load(direct, "skops", "m@1 model")
    method = "predict_proba" if hasattr(model, "predict_proba") else "predict"
    assert np.array_equal(getattr(loaded, method)(x), getattr(model, method)(x))


def test_equal_models_give_equal_bytes_and_a_change_changes_them() -> None:
    first, second = _models(), _models()  # fitted twice: new objects, new ids
    for a, b in zip(first, second, strict=True):
        assert formats.dump(a, "skops") == formats.dump(b, "skops")
    changed = first[1].set_params(learning_rate=0.2)
    assert formats.dump(changed, "skops") != formats.dump(second[1], "skops")


def test_files_are_numbered_as_they_appear_and_shared_arrays_stay_shared() -> None:
    shared = np.arange(5.0)
    scaler = StandardScaler().fit(np.ones((3, 5)))
    scaler.mean_ = shared
    scaler.var_ = shared  # one array under two names: stored once
    data = formats.dump(scaler, "skops")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = archive.namelist()
        schema = json.loads(archive.read("schema.json"))
        infos = archive.infolist()
    files = [n for n in names if n != "schema.json"]
    assert all(n.removesuffix(".npy").isdigit() for n in files)
    state = schema["content"]["content"]  # the object's __dict__
    assert state["mean_"]["file"] == state["var_"]["file"] in files
    assert len(files) == 3  # n_samples_seen_, the shared array, scale_
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    loaded = formats.load(data, "skops", "s@1 preprocess")
    assert np.array_equal(loaded.var_, shared) and np.array_equal(loaded.mean_, shared)


def test_bytes_in_a_model_are_named_by_order_not_by_a_random_uuid() -> None:
    scaler = StandardScaler().fit(np.ones((3, 2)))
    scaler.blob_ = b"\x00\x01payload"  # skops stores bytes as "<uuid4>.bin"
    first, second = formats.dump(scaler, "skops"), formats.dump(scaler, "skops")
    assert first == second
    with zipfile.ZipFile(io.BytesIO(first)) as archive:
        assert "file-1.bin" in archive.namelist()
    assert formats.load(first, "skops", "s@1 preprocess").blob_ == b"\x00\x01payload"


def test_a_skops_whose_internals_changed_takes_the_public_route(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import skops.io._utils

    calls = []

    def changed(**kwargs: object) -> None:
        calls.append(kwargs)
        raise TypeError("SaveContext() got an unexpected keyword argument 'zip_file'")

    model = _models()[1]
    expected = formats.skops_bytes(model)
    monkeypatch.setattr(skops.io._utils, "SaveContext", changed)
    assert formats.skops_bytes(model) == expected
    assert len(calls) == 1  # the direct route was tried, and gave way


def test_a_skops_whose_state_walk_changed_takes_the_public_route(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Unlike(dict):  # a zip stand-in the walk can no longer use: no namelist
        def writestr(self, name: str, data: object) -> None:
            self[name] = bytes(data)  # type: ignore[call-overload]

    model = _models()[1]
    expected = formats.skops_bytes(model)
    monkeypatch.setattr(formats, "_Files", Unlike)
    assert formats.skops_bytes(model) == expected


def test_sparse_matrices_are_numbered_like_arrays() -> None:
    import scipy.sparse

    scaler = StandardScaler().fit(np.ones((3, 2)))
    scaler.sparse_ = scipy.sparse.csr_matrix(np.eye(3))
    first, second = formats.dump(scaler, "skops"), formats.dump(scaler, "skops")
    assert first == second
    with zipfile.ZipFile(io.BytesIO(first)) as archive:
        sparse = [n for n in archive.namelist() if n.endswith(".npz")]
    assert len(sparse) == 1 and sparse[0].removesuffix(".npz").isdigit()
    loaded = formats.load(first, "skops", "s@1 preprocess", trust=["scipy.sparse._csr.csr_matrix"])
    assert (loaded.sparse_ != scaler.sparse_).nnz == 0
