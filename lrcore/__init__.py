"""lrcore: logistic regression on MNIST-style images, as a small library with a command line.

Data (`data`), the model (`model`), hand-written training steps (`engine`), the event
stream (`training`, `events`), evaluation (`evaluate`), checkpoints (`checkpoint`) and
drawn-digit preprocessing (`preprocess`). Never imports streamlit.

    from lrcore import TrainConfig, load_dataset, train

The names below are imported on first use, not when the package is: a package that imports
its submodules while it initialises deadlocks with threads importing those submodules at the
same time (a dashboard's sessions on a just-started server), and Python then hands one of them
a half-initialised module ("cannot import name 'Dataset' from partially initialized module").
"""
from __future__ import annotations

import importlib

_EXPORTS = {"ConfigError": "config", "TrainConfig": "config", "config_problems": "config",
            "Dataset": "data", "DatasetUnavailable": "data", "load_dataset": "data", "make_splits": "data",
            "LogisticRegression": "model",
            "TrainingControl": "training", "train": "training", "train_group": "training"}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lrcore' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
