"""GPU placement: train on a GPU when the spec asks and one is visible, else say so clearly."""

from __future__ import annotations

import os
import shutil
import subprocess

from loopml.errors import InputError

GPU_FLAVORS = ("lightgbm", "xgboost", "torch-mlp")


def visible_gpus(flavor: str = "") -> int:
    """How many CUDA GPUs ``flavor`` can use here (0 without a driver or with none visible).

    The MLP asks PyTorch (a CPU build of torch sees none, whatever the machine has);
    the boosters bring their own CUDA code, so the driver's ``nvidia-smi`` answers.
    """
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in {"", "-1"}:
        return 0
    if flavor == "torch-mlp":
        try:
            import torch
        except ModuleNotFoundError:
            return 0
        return int(torch.cuda.device_count())
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return 0
    try:
        done = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    if done.returncode != 0:
        return 0
    listed = [line for line in done.stdout.splitlines() if line.startswith("GPU ")]
    wanted = os.environ.get("CUDA_VISIBLE_DEVICES")
    if wanted:
        return min(len(listed), len([d for d in wanted.split(",") if d.strip()]))
    return len(listed)


def device_for(gpus: float, flavor: str, *, fallback: bool) -> tuple[str, str | None]:
    """The device to train on, and a note when the spec's wish was not met.

    Args:
        gpus: the GPUs the spec asks for (0: CPU).
        flavor: the trainer's flavor.
        fallback: whether training may run on the CPU when no GPU can be used.

    Raises:
        InputError: a GPU is asked for, none can be used, and fallback is off.
    """
    if gpus <= 0:
        return "cpu", None
    if flavor not in GPU_FLAVORS:
        reason = f"{flavor} models train on the CPU only"
    elif visible_gpus(flavor) == 0:
        reason = "no GPU is visible to this process"
    else:
        return "cuda", None
    if fallback:
        return "cpu", f"{reason}; trained on the CPU (gpu_fallback)"
    raise InputError(
        f"the spec asks for {gpus:g} GPU(s), but {reason}",
        hint="set gpus: 0, or gpu_fallback: true (--gpu-fallback) to train on the CPU",
    )
