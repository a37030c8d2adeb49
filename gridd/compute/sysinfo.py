"""What a worker advertises about its machine (CPU, memory, GPUs, TF version, load)."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class MachineInfo:
    cpus: int
    memory: int  # bytes
    gpus: tuple[str, ...]
    tf: str


def machine_info(with_tf: bool = True) -> MachineInfo:
    """Facts that do not change while the worker runs; imports TF when with_tf (slow, once)."""
    import psutil

    gpus: tuple[str, ...] = ()
    tf_version = ""
    if with_tf:
        import tensorflow as tf

        tf_version = tf.__version__
        gpus = tuple(d.name for d in tf.config.list_physical_devices("GPU"))
    return MachineInfo(os.cpu_count() or 0, int(psutil.virtual_memory().total), gpus, tf_version)


def load() -> float:
    """1-minute load average per CPU (0 where the OS has none)."""
    try:
        return round(os.getloadavg()[0] / (os.cpu_count() or 1), 3)
    except OSError:
        return 0.0
