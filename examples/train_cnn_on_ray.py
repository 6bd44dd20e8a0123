"""Import a small PyTorch CNN, train it by predictive coding on a Ray engine for two
epochs on the 8x8 digits, put the weights back into the module and read the run's
traffic as an Arrow table.

    python examples/train_cnn_on_ray.py [OUT_DIR]
"""

import sys
import tempfile
from pathlib import Path

import torch

import neurolocal
from models import SmallCNN


def main(out: Path) -> None:
    torch.manual_seed(0)
    module = SmallCNN().double()
    graph, params = neurolocal.from_torch(module, torch.zeros(2, 1, 8, 8, dtype=torch.float64))
    print(graph.summary())
    config = neurolocal.EngineConfig(engine="ray", traffic_log=str(out / "traffic"))
    history = neurolocal.train(graph, "digits", {"epochs": 2, "batch_size": 64,
                                                 "optimizer": {"name": "adam", "lr": 0.01}},
                               engine=config, params=params)
    print(f"test accuracy after {history.epochs_done} epochs: {history.test_accuracy[-1]:.3f}")
    neurolocal.export_state_dict(graph, params, module)
    table = neurolocal.traffic.read_table(out / "traffic")
    print(f"{table.num_rows} messages, columns: {', '.join(table.column_names)}")
    per_kind = table.unify_dictionaries().group_by("kind").aggregate([("bytes", "sum")])
    print({k: b for k, b in zip(per_kind["kind"].to_pylist(), per_kind["bytes_sum"].to_pylist())})


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp))
