"""The tabular MLP trainer (PyTorch, extra ``loopml[torch]``).

Parameters (all optional): ``hidden`` (layer sizes, default [64, 32]), ``epochs`` (20),
``batch_size`` (256), ``lr`` (1e-3), ``weight_decay`` (0), ``dropout`` (0.1) and
``patience`` (epochs without improvement on the validation rows before stopping, 5).
Binary tasks train one logit with BCE, multiclass tasks k logits with cross-entropy,
regression a standardised value with MSE. The saved artifact is the state dict as
NumPy arrays plus this architecture; nothing is pickled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from loopml.errors import InputError
from loopml.registry import torch_mlp

DEFAULTS: dict[str, Any] = {
    "hidden": [64, 32],
    "epochs": 20,
    "batch_size": 256,
    "lr": 1e-3,
    "weight_decay": 0.0,
    "dropout": 0.1,
    "patience": 5,
}


@dataclass
class FittedMLP:
    """A trained MLP and the architecture it is rebuilt from."""

    module: Any
    arch: dict[str, Any]


def fit(spec: Any, x: Any, y: Any, x_valid: Any, y_valid: Any, checkpoint: Any) -> FittedMLP:
    """Train the MLP; report validation scores each epoch; keep the best epoch's weights."""
    import numpy as np
    import torch
    from torch import nn

    unknown = sorted(set(spec.params) - set(DEFAULTS))
    if unknown:
        raise InputError(
            f"torch-mlp has no parameter {', '.join(unknown)}",
            hint=f"its parameters are {', '.join(DEFAULTS)}",
        )
    params = _checked({**DEFAULTS, **spec.params})
    torch.manual_seed(spec.seed)
    torch.set_num_threads(max(1, spec.threads))
    device = torch.device(spec.device)
    outputs = spec.n_classes if spec.task == "multiclass" else 1
    y = np.asarray(y)
    y_mean, y_std = 0.0, 1.0
    if spec.task == "regression":
        y_mean, y_std = float(y.mean()), float(y.std() or 1.0)
    arch = {
        "inputs": int(x.shape[1]),
        "hidden": [int(h) for h in params["hidden"]],
        "outputs": int(outputs),
        "dropout": float(params["dropout"]),
        "task": spec.task,
        "y_mean": y_mean,
        "y_std": y_std,
    }
    module = torch_mlp.build(arch).to(device)
    features = torch.as_tensor(np.asarray(x, dtype=np.float32), device=device)
    if spec.task == "multiclass":
        target = torch.as_tensor(y.astype(np.int64), device=device)
        loss_fn: Any = nn.CrossEntropyLoss()
    else:
        values = (y.astype(np.float64) - y_mean) / y_std
        target = torch.as_tensor(values.astype(np.float32), device=device).unsqueeze(1)
        loss_fn = nn.BCEWithLogitsLoss() if spec.task == "binary" else nn.MSELoss()
    optimiser = torch.optim.Adam(
        module.parameters(), lr=float(params["lr"]), weight_decay=float(params["weight_decay"])
    )
    generator = torch.Generator(device="cpu").manual_seed(spec.seed)
    batch = int(params["batch_size"])
    best, best_state, stale = math.inf, None, 0
    for epoch in range(1, int(params["epochs"]) + 1):
        module.train()
        order = torch.randperm(len(features), generator=generator).to(device)
        for start in range(0, len(features), batch):
            index = order[start : start + batch]
            optimiser.zero_grad()
            loss = loss_fn(module(features[index]), target[index])
            loss.backward()
            optimiser.step()
        module.eval()
        if x_valid is None:
            continue
        fitted = FittedMLP(module, arch)
        valid_scores = scores(fitted, x_valid)
        valid_loss = _loss(spec.task, y_valid, valid_scores)
        if checkpoint is not None:
            checkpoint(epoch, valid_scores)
        if valid_loss < best - 1e-6:
            best, stale = valid_loss, 0
            best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        else:
            stale += 1
            if stale >= int(params["patience"]):
                break
    if best_state is not None:
        module.load_state_dict(best_state)
    module.eval()
    return FittedMLP(module.cpu(), arch)


def scores(model: FittedMLP, x: Any) -> Any:
    """Probabilities or values for matrix ``x``."""
    return torch_mlp.to_scores(torch_mlp.forward(model.module, x, model.arch), model.arch)


def _loss(task: str, y: Any, scores: Any) -> float:
    import numpy as np

    y = np.asarray(y)
    if task == "regression":
        return float(np.mean((scores - y) ** 2))
    eps = 1e-12
    if task == "binary":
        p = np.clip(scores, eps, 1 - eps)
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    return float(-np.mean(np.log(np.clip(scores[np.arange(len(y)), y.astype(int)], eps, 1))))


def _checked(params: dict[str, Any]) -> dict[str, Any]:
    """The MLP's parameters, checked: a clear error beats a traceback from deep in torch."""
    hidden = params["hidden"]
    if isinstance(hidden, int) and not isinstance(hidden, bool):
        hidden = [hidden]
    if not (
        isinstance(hidden, list)
        and hidden
        and all(isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in hidden)
    ):
        raise InputError(
            f"torch-mlp hidden={params['hidden']!r}: a list of layer sizes", hint="hidden=[64, 32]"
        )
    checked = {**params, "hidden": hidden}
    for key in ("epochs", "batch_size", "patience"):
        value = params[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InputError(f"torch-mlp {key}={value!r}: a whole number >= 1")
    ranges = {"lr": "> 0", "weight_decay": ">= 0", "dropout": ">= 0 and < 1"}
    for key, wanted in ranges.items():
        value = params[key]
        number = not isinstance(value, bool) and isinstance(value, int | float)
        fits = number and {
            "lr": lambda v: v > 0,
            "weight_decay": lambda v: v >= 0,
            "dropout": lambda v: 0 <= v < 1,
        }[key](value)
        if not fits:
            raise InputError(f"torch-mlp {key}={value!r}: a number {wanted}")
    return checked
