"""PyTorch models for the examples (and `neurolocal import examples/models.py:SmallCNN`)."""

import torch
from torch import nn


class SmallCNN(nn.Module):
    """conv-relu-maxpool, a residual conv, global average pooling, a linear head: 8x8 digits."""

    def __init__(self, channels=6, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(channels, classes)

    def forward(self, x):
        h = self.pool(torch.relu(self.conv1(x)))
        h = torch.relu(h + self.conv2(h))
        return self.head(torch.flatten(self.gap(h), 1))


class WithLSTM(nn.Module):
    """Refused by the importer: neurolocal has no LSTM vertex for an nn.LSTM."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(8, 8, batch_first=True)
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        return self.head(self.lstm(x)[0].mean(dim=1))
