"""Training: epochs of shuffled minibatches with predictive coding or backprop.

    settings.py     the topology's `training:` section merged with overrides, checked once
    history.py      a run's state (parameters, optimizer, generator) and per-epoch metrics
    loop.py         the epoch loop and evaluation
    checkpoint.py   atomic, pickle-free checkpoints; resuming is bitwise
    metrics.py      metrics.json and the final table
    optimizers.py   SGD (momentum) and Adam, matching torch.optim
    data.py         data sets and files, checked in one line per problem
    plots.py        curves.png and energy.png

The names below are the package's public surface (`from neurolocal import training`).
"""

from neurolocal.training.checkpoint import (
                                            checkpoint_path,
                                            load_checkpoint,
                                            read_checkpoint_settings,
                                            save_checkpoint,
)
from neurolocal.training.history import History, Run, new_run, predicted_positions
from neurolocal.training.loop import (
                                            evaluate,
                                            make_engine,
                                            predict,
                                            progress_factory,
                                            serial_blas,
                                            train,
)
from neurolocal.training.metrics import final_table, metrics_document, write_json_atomic
from neurolocal.training.settings import (
                                            ALGORITHMS,
                                            MODES,
                                            Settings,
                                            iterations_for,
                                            resolve_settings,
)

__all__ = ["ALGORITHMS", "History", "MODES", "Run", "Settings",
           "checkpoint_path", "evaluate", "final_table", "iterations_for", "load_checkpoint",
           "make_engine", "metrics_document", "new_run", "predict", "predicted_positions",
           "progress_factory", "read_checkpoint_settings", "resolve_settings", "save_checkpoint",
           "serial_blas", "train", "write_json_atomic"]
