"""Where TensorFlow runs: GPU memory taken as needed, a chief that holds no GPU, the GPU a run used.

TensorFlow maps nearly all of a GPU's memory when it first touches it (tensorflow issues 25138,
36465), so two workers on one GPU, or a chief beside its workers, would starve each other.
TensorFlow's own switch, `TF_FORCE_GPU_ALLOW_GROWTH=true`, makes it grow its memory as needed
instead; it is read when TensorFlow first initialises a GPU, so textsweep sets it as a default
when the package is imported (every job, local worker process and served model imports it first),
and a value set by the user, `false` included, is kept.
"""

from __future__ import annotations

import functools
import os

MEMORY_GROWTH_VARIABLE = "TF_FORCE_GPU_ALLOW_GROWTH"


def default_to_memory_growth() -> None:
    """Memory growth on unless the user chose otherwise (module docstring)."""
    os.environ.setdefault(MEMORY_GROWTH_VARIABLE, "true")


def stay_off_gpus() -> int:
    """For a chief, which serves the oracle and trains nothing: hide this process's GPUs from
    TensorFlow before it initialises them, so that all of their memory stays with the workers.
    Returns how many GPUs the machine has (physical devices stay listed), to pin workers to."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:  # TensorFlow already runs on them in this process (a notebook): leave it
        pass
    return len(gpus)


@functools.cache
def gpu_names() -> tuple[str, ...]:
    """The names of the GPUs this process sees (CUDA_VISIBLE_DEVICES applies)."""
    import tensorflow as tf

    names = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        names.append(details.get("device_name", gpu.name))
    return tuple(names)


def gpu_in_use() -> str | None:
    """The GPU this process trains on, as `<index on the machine>: <name>`; None without one.

    Keras places a model on the first visible GPU; a worker pinned with `CUDA_VISIBLE_DEVICES=2`
    sees only the machine's GPU 2, as its first.
    """
    names = gpu_names()
    if not names:
        return None
    pinned = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    return f"{pinned or 0}: {names[0]}"
