"""Small PyTorch models written as a user would, for the importer's tests (float64)."""

from __future__ import annotations

import torch
from torch import nn


class ResidualCNN(nn.Module):
    """conv, relu, an add skip, avgpool, linear (a ResNet basic block in miniature)."""

    def __init__(self, channels=4, classes=10):
        super().__init__()
        self.stem = nn.Conv2d(1, channels, 3, padding=1)
        self.relu = nn.ReLU()
        self.block = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
                                   nn.Conv2d(channels, channels, 3, padding=1))
        self.pool = nn.AvgPool2d(2)
        self.gap = nn.AdaptiveAvgPool2d(2)
        self.head = nn.Linear(channels * 4, classes)

    def forward(self, x):
        h = self.relu(self.stem(x))
        h = self.relu(h + self.block(h))
        h = self.gap(self.pool(h))
        return self.head(h.reshape(h.shape[0], -1))


class EncoderBlock(nn.Module):
    """Pre-norm multi-head self-attention and an MLP, written out with nn.Linear,
    matmul, softmax, nn.LayerNorm and GELU."""

    def __init__(self, width, heads, hidden):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.ModuleList([nn.Linear(width, width) for _ in range(3)])
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))
        self.drop = nn.Dropout(0.0)

    def split(self, t):
        b, n, c = t.shape
        return t.reshape(b, n, self.heads, c // self.heads).transpose(1, 2)

    def forward(self, x):
        h = self.norm1(x)
        q, k, v = (self.split(layer(h)) for layer in self.qkv)
        scores = q @ k.transpose(-2, -1) / (q.shape[-1] ** 0.5)
        mixed = torch.softmax(scores, dim=-1) @ v
        b, heads, n, d = mixed.shape
        x = x + self.drop(self.proj(mixed.transpose(1, 2).reshape(b, n, heads * d)))
        return x + self.mlp(self.norm2(x))


class Encoder(nn.Module):
    def __init__(self, tokens=5, features=6, width=8, heads=2, blocks=2, classes=3):
        super().__init__()
        self.embed = nn.Linear(features, width)
        self.blocks = nn.Sequential(*[EncoderBlock(width, heads, 2 * width)
                                      for _ in range(blocks)])
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        h = self.norm(self.blocks(self.embed(x)))
        return self.head(h.mean(dim=1))


class MixerBlock(nn.Module):
    """MLP-mixer: token mixing across the transposed per-sample axes, then channel mixing."""

    def __init__(self, tokens=6, channels=5, classes=4):
        super().__init__()
        self.norm1 = nn.LayerNorm(channels)
        self.tokens = nn.Sequential(nn.Linear(tokens, 8), nn.GELU(), nn.Linear(8, tokens))
        self.norm2 = nn.LayerNorm(channels)
        self.channels = nn.Sequential(nn.Linear(channels, 7), nn.GELU(), nn.Linear(7, channels))
        self.head = nn.Linear(channels, classes)

    def forward(self, x):
        x = x + self.tokens(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        x = x + self.channels(self.norm2(x))
        return self.head(torch.mean(x, 1))


class TextClassifier(nn.Module):
    """Embedding, a mean over the tokens, a tanh layer and the classes."""

    def __init__(self, vocab=20, width=6, classes=3):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.hidden = nn.Linear(width, 8)
        self.out = nn.Linear(8, classes)

    def forward(self, ids):
        return self.out(torch.tanh(self.hidden(self.embed(ids).mean(dim=1))))


def examples(seed=0, batch=4):
    """(name, module, example input, target labels) for each model, float64, seeded."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    out = [
        ("residual_cnn", ResidualCNN(), torch.randn(batch, 1, 8, 8, generator=g), 10),
        ("encoder", Encoder(), torch.randn(batch, 5, 6, generator=g), 3),
        ("mixer", MixerBlock(), torch.randn(batch, 6, 5, generator=g), 4),
        ("text", TextClassifier(), torch.randint(0, 20, (batch, 7), generator=g), 3),
    ]
    return [(name, m.double(), x if not x.is_floating_point() else x.double(),
             torch.randint(0, classes, (batch,), generator=g)) for name, m, x, classes in out]
