"""Choosing the device a run trains on."""

from __future__ import annotations

import torch

__all__ = ["available_devices", "resolve_device"]


def available_devices() -> list[str]:
    """Device names usable here, best first: ``cuda`` (each GPU), ``mps``, ``cpu``."""
    devices = []
    if torch.cuda.is_available():
        devices.append("cuda")
        devices.extend(f"cuda:{i}" for i in range(torch.cuda.device_count()))
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.append("mps")
    devices.append("cpu")
    return devices


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"`` or a device name into a ``torch.device`` that exists here.

    ``"auto"`` picks cuda, then mps, then cpu. A device that is not present
    raises ``ValueError`` naming the devices that are.
    """
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise ValueError(f"Invalid device: {device!r}; expected 'auto' or one of {', '.join(available_devices())}")
    present = available_devices()
    if device == "auto":
        return torch.device(present[0])
    if device not in present:
        raise ValueError(f"Device {device!r} is not available here; available: auto, {', '.join(present)}")
    return torch.device(device)
