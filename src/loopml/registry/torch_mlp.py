"""The tabular MLP's architecture: built from a JSON spec, so a state dict loads safely.

Training lives in ``loopml.train``; the registry needs the architecture to load a
version, and a spec plus NumPy weights is all it stores (no pickle, no TorchScript).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def build(arch: Mapping[str, Any]) -> Any:
    """A ``torch.nn.Sequential`` for ``arch``: inputs, hidden sizes, outputs, dropout.

    Raises:
        ModuleNotFoundError: PyTorch is not installed (``loopml[torch]``).
    """
    import torch
    from torch import nn

    layers: list[Any] = []
    width = int(arch["inputs"])
    for hidden in arch["hidden"]:
        layers += [nn.Linear(width, int(hidden)), nn.ReLU(), nn.Dropout(float(arch["dropout"]))]
        width = int(hidden)
    layers.append(nn.Linear(width, int(arch["outputs"])))
    model = nn.Sequential(*layers)
    return model.to(torch.float32)


def load_state(model: Any, arrays: Mapping[str, Any]) -> Any:
    """Copy NumPy ``arrays`` (a saved state dict) into ``model``, strictly."""
    import torch

    model.load_state_dict({key: torch.from_numpy(value) for key, value in arrays.items()})
    model.eval()
    return model


def state_arrays(model: Any) -> dict[str, Any]:
    """``model``'s state dict as NumPy arrays, for the ``npz`` format."""
    return {key: value.detach().cpu().numpy() for key, value in model.state_dict().items()}


def forward(model: Any, matrix: Any, arch: Mapping[str, Any], batch: int = 65536) -> Any:
    """Raw outputs for a float matrix: logits, or standardised values for regression."""
    import numpy as np
    import torch

    device = next(model.parameters()).device
    outputs = []
    with torch.no_grad():
        for start in range(0, len(matrix), batch):
            chunk = torch.as_tensor(
                np.ascontiguousarray(matrix[start : start + batch], dtype=np.float32),
                device=device,
            )
            outputs.append(model(chunk).cpu().numpy())
    width = int(arch["outputs"])
    return np.concatenate(outputs) if outputs else np.empty((0, width), dtype=np.float32)


def to_scores(raw: Any, arch: Mapping[str, Any]) -> Any:
    """Logits to probabilities (classification) or back to target units (regression)."""
    import numpy as np

    task = arch["task"]
    if task == "binary":
        return 1.0 / (1.0 + np.exp(-raw[:, 0].astype(np.float64)))
    if task == "multiclass":
        shifted = raw - raw.max(axis=1, keepdims=True)
        exp = np.exp(shifted.astype(np.float64))
        return exp / exp.sum(axis=1, keepdims=True)
    return raw[:, 0].astype(np.float64) * float(arch["y_std"]) + float(arch["y_mean"])
