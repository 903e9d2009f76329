"""A crafted skops file cannot make loading run a function, write a file or build an
arbitrary object: only scikit-learn estimator classes and named internals are trusted."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import skops.io
from sklearn.linear_model import LogisticRegression

from loopml.errors import InputError
from loopml.registry import formats


def _crafted_savetxt(target: Path) -> bytes:
    """A skops file whose root node asks skops to call numpy.savetxt(target, ...)."""
    fitted = LogisticRegression().fit(np.array([[0.0], [1.0]]), [0, 1])
    with zipfile.ZipFile(io.BytesIO(skops.io.dumps(fitted))) as real:
        protocol = json.loads(real.read("schema.json")).get("protocol")

    def json_node(value: object) -> dict:
        return {
            "__class__": type(value).__name__,
            "__module__": "builtins",
            "__loader__": "JsonNode",
            "content": json.dumps(value),
            "is_json": True,
            "__id__": id(value),
        }

    args = [str(target), [], "%s", " ", "\n", "pwned"]
    schema = {
        "__class__": "savetxt",
        "__module__": "numpy",
        "__loader__": "ConstructorFromReduceNode",
        "content": {
            "__class__": "tuple",
            "__module__": "builtins",
            "__loader__": "TupleNode",
            "content": [json_node(a) for a in args],
        },
        "__id__": 1,
        "protocol": protocol,
        "_skops_version": skops.__version__,
    }
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as crafted:
        crafted.writestr("schema.json", json.dumps(schema))
    return out.getvalue()


def test_a_file_naming_a_numpy_function_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    target = tmp_path / "pwned.txt"
    data = _crafted_savetxt(target)
    assert "numpy.savetxt" in skops.io.get_untrusted_types(data=data)
    with pytest.raises(InputError, match=r"numpy\.savetxt"):
        formats.load(data, "skops", "evil@1 model")
    assert not target.exists()


def test_estimators_and_fitted_trees_load_without_extra_trust() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier

    x = np.random.default_rng(0).normal(size=(200, 3))
    y = (x[:, 0] > 0).astype(int)
    for estimator in (RandomForestClassifier(3), HistGradientBoostingClassifier(max_iter=3)):
        fitted = estimator.fit(x, y)
        loaded = formats.load(formats.dump(fitted, "skops"), "skops", "ok@1 model")
        assert np.array_equal(loaded.predict_proba(x), fitted.predict_proba(x))
