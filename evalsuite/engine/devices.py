"""The torch device a command runs on: checked before anything loads (CUDA asked on a machine without it fails
here, not deep in lm-eval), the default when none is asked, and its name as results record it."""

from __future__ import annotations

from evalsuite.errors import OptionError, param
from evalsuite.settings import Dtype


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve(device: str | None, dtype: Dtype | None) -> tuple[str, Dtype]:
    """The device and dtype a command runs with: the ones asked, else CUDA when there is one, and the device's
    default dtype (float32 on CPU, bfloat16 on CUDA)."""
    device = device or default_device()
    return device, dtype or Dtype.default_for(device)


def check_device(device: str | None) -> None:
    """A device torch knows and this machine has."""
    if device is None:
        return
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError) as e:
        raise OptionError(f"{param('device')} {device!r}: give cpu, cuda or cuda:N") from e
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch is a CPU build" if torch.version.cuda is None else "no CUDA device is visible"
            raise OptionError(
                f"{param('device')} {device}: {why}; use {param('device')} cpu (or leave {param('device')} out)"
            )
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise OptionError(
                f"{param('device')} {device}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    elif parsed.type not in ("cpu", "mps"):
        raise OptionError(f"{param('device')} {device!r}: give cpu, cuda or cuda:N")


def describe_device(device: str) -> str:
    """`cuda:0 (NVIDIA H100 80GB HBM3)`, or the device as given."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return device
