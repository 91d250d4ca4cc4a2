"""The two networks of the paper's deep tasks, small enough for a CPU.

Both end in one ``nn.Linear`` named ``head`` with a single output (binary sigmoid head),
whose input is what the service explains (the torch adapter captures it).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

__all__ = ["BiLSTMClassifier", "SmallResNet", "HEAD_LAYER"]

HEAD_LAYER = "head"
"""Dotted name of the final Linear in both networks."""


class _BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity (or 1x1) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, *, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(self.bn1(self.conv1(inputs)))
        return torch.relu(self.bn2(self.conv2(hidden)) + self.shortcut(inputs))


class SmallResNet(nn.Module):
    """A ResNet for 32x32 images: stem, three stages of one block each, global pooling.

    Input (batch, 3, 32, 32) float32; output (batch, 1) logits. φ(x) has ``4 * width``
    entries (the pooled output of the last stage).
    """

    def __init__(self, *, width: int = 16) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        self.stages = nn.Sequential(
            _BasicBlock(width, width, stride=1),
            _BasicBlock(width, 2 * width, stride=2),
            _BasicBlock(2 * width, 4 * width, stride=2),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(4 * width, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(self.stages(self.stem(images))).flatten(1)  # (batch, 4 * width)
        return self.head(pooled)


class BiLSTMClassifier(nn.Module):
    """Embeddings trained from scratch, a bidirectional LSTM, max-pooled over time.

    Input (batch, max_tokens) int64 token ids, 0-padded at the end; output (batch, 1).
    φ(x) = max over the review's tokens of [forward state; backward state], ``2 * hidden``
    entries (max pooling trains far faster from scratch than the final states alone).
    """

    def __init__(
        self, *, vocab_size: int, embedding_dim: int = 64, hidden: int = 64, dropout: float = 0.3
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=0)
        self.lstm = nn.LSTM(embedding_dim, hidden, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(2 * hidden, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        lengths = (tokens != 0).sum(dim=1).clamp(min=1).cpu()
        embedded = self.dropout(self.embedding(tokens))  # (batch, max_tokens, embedding_dim)
        packed = pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False)
        outputs, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True, padding_value=-1e4)
        pooled = outputs.max(dim=1).values  # (batch, 2 * hidden)
        return self.head(self.dropout(pooled))
