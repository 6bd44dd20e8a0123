"""Import a small transformer encoder written in PyTorch, check PC's updates against
backprop in process, train it by PC for an epoch on the local engine, and ask SQL of
its traffic (DuckDB, the `analysis` extra).

    python examples/check_an_imported_transformer.py
"""

import tempfile
from pathlib import Path

import torch
from torch import nn

import neurolocal


class TinyEncoder(nn.Module):
    """The 8 rows of an 8x8 digit as tokens: one attention head, an MLP, a linear head."""

    def __init__(self, width=16):
        super().__init__()
        self.embed = nn.Linear(8, width)
        self.norm = nn.LayerNorm(width)
        self.q, self.k, self.v = (nn.Linear(width, width) for _ in range(3))
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(),
                                 nn.Linear(2 * width, width))
        self.head = nn.Linear(width, 10)

    def forward(self, x):
        h = self.embed(x.reshape(x.shape[0], 8, 8))
        n = self.norm(h)
        scores = self.q(n) @ self.k(n).transpose(1, 2) / 4.0
        h = h + torch.softmax(scores, dim=-1) @ self.v(n)
        h = h + self.mlp(h)
        return self.head(h.mean(dim=1))


def main(out: Path) -> None:
    torch.manual_seed(0)
    module = TinyEncoder().double()
    graph, params = neurolocal.from_torch(module, torch.zeros(2, 1, 8, 8, dtype=torch.float64))
    check = neurolocal.check_grad(graph, params)
    print(f"{len(graph.order)} vertices; PC vs backprop: max relative error "
          f"{check.max_relative_error:.1e}")
    config = neurolocal.EngineConfig(engine="local", traffic_log=str(out / "traffic"))
    history = neurolocal.train(graph, "digits", {"epochs": 1, "batch_size": 64}, engine=config,
                               params=params)
    print(f"test accuracy after one epoch: {history.test_accuracy[-1]:.3f}")
    neurolocal.export_state_dict(graph, params, module)
    busiest = neurolocal.traffic.query(
        out / "traffic", "SELECT src, dst, sum(bytes) AS bytes FROM messages "
                         "GROUP BY src, dst ORDER BY bytes DESC LIMIT 3")
    print(busiest.to_pylist())


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        main(Path(tmp))
