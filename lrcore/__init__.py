"""lrcore: logistic regression on MNIST-style images, as a small library with a command line.

Data (`data`), the model (`model`), hand-written training steps (`engine`), the event
stream (`train`, `events`), evaluation (`evaluate`), checkpoints (`checkpoint`) and
drawn-digit preprocessing (`preprocess`). Never imports streamlit.
"""
from .config import ConfigError, TrainConfig, config_problems
from .data import Dataset, DatasetUnavailable, load_dataset, make_splits
from .model import LogisticRegression
from .train import TrainingControl, train, train_group

__all__ = ["ConfigError", "TrainConfig", "config_problems", "Dataset", "DatasetUnavailable", "load_dataset",
           "make_splits", "LogisticRegression", "TrainingControl", "train", "train_group"]
