"""textsweep: hyperparameter sweeps for LSTM text classifiers, tracked in MLflow.

From a notebook or a script::

    import textsweep
    result = textsweep.sweep("sweeps/quick.yaml")          # or a dict, and data=<a DataFrame>
    result.leaderboard                                     # finished trials, best first
    result.best_model().predict(["a wonderful film"])      # the best trial on raw text
    result.promote()                                       # test split, registry, alias gate
    textsweep.load_model("models:/imdb-sentiment@champion").predict(["dull and too long"])

The CLI (`textsweep sweep|train|promote|predict|runs`) is a thin layer over these functions.

Imports go one way: each line below imports only from the lines under it (tests/test_layout.py
checks it; TensorFlow loads only when a job needs it)::

    cli.py                          argparse over api only
    api.py                          train, sweep, promote, load_model, and their results
    registry.py                     choose the sweep, register, gate the alias
    candidates.py                   the best trial, the reference, their blend: chosen on validation
    search/ | tracking/             KerasTuner | MLflow, neither importing the other: the search
                                    emits trial events to observers, tracking's among them
    evaluation.py                   scores of class probabilities: metrics, the blend's weight, figures
    serving.py                      the registered model, raw text in (logged as code)
    reference.py  model.py          the linear reference; the seeds' LSTM and its KerasTuner HyperModel
    layers.py  events.py            Keras layers; the trial events both sides speak
    text/                           tokenizers, encoded splits, the input pipeline
    data/                           sources, cleaning, splits, fingerprint
    config.py  devices.py  plots.py the sweep file's typed config; where TensorFlow runs; figures
    errors.py  interrupts.py        the errors a user can cause; Ctrl-C and SIGTERM, never lost
"""

__version__ = "0.1.0"

from textsweep.devices import default_to_memory_growth  # noqa: E402
from textsweep.errors import ConfigError, DataError, RegistryError, SweepError, TextsweepError, TrackingError  # noqa: E402

default_to_memory_growth()  # before anything here loads TensorFlow (devices.py)

_API = ("sweep", "train", "promote", "load_model", "SweepResult", "TrainResult", "RawTextModel")
__all__ = [*_API, "TextsweepError", "ConfigError", "DataError", "TrackingError", "RegistryError", "SweepError"]


def __getattr__(name: str):
    # The API lives in api.py, which imports MLflow (~3 s): loaded on first use, so that
    # `textsweep --version` or a sweep-file error answers at once.
    if name in _API:
        from textsweep import api

        return getattr(api, name)
    raise AttributeError(f"module 'textsweep' has no attribute {name!r}")
