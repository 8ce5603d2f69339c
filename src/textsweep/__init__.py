"""textsweep: hyperparameter sweeps for LSTM text classifiers, tracked in MLflow.

The data flows one way through the modules:
config -> data -> vocab -> model -> tuning -> tracking -> registry -> serving, and cli on top.
"""

__version__ = "0.1.0"
