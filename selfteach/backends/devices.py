"""Which torch device a run uses: the one rule for the transformers backend and every trainer."""

from __future__ import annotations

from selfteach.errors import SelfteachError


def pick_device(device: str | None = "auto") -> str:
    """"auto"/None: cuda when available, else cpu; "cpu"; "cuda" or "cuda:N" (checked to exist).
    Anything else is a one-line error, never a silent fall-back to CPU."""
    import torch

    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit()):
        if not torch.cuda.is_available():
            raise SelfteachError(f"--device {device}: no CUDA device is available")
        if ":" in device and int(device[5:]) >= torch.cuda.device_count():
            raise SelfteachError(
                f"--device {device}: only {torch.cuda.device_count()} CUDA device(s)"
            )
        return device
    raise SelfteachError(f"--device {device!r}: choose auto, cpu, cuda or cuda:N")
