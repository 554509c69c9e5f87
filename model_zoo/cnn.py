"""Convolutional entries: a transformers ResNet and a hand-written small CNN."""

from __future__ import annotations

import torch
import transformers as hf
from torch import nn

from model_zoo.registry import zoo_entry


def image_inputs(size: int) -> object:
    """An input maker for plain image models: one ``(1, 3, size, size)`` tensor."""

    def make(_model: nn.Module, _tier: str, seed: int) -> torch.Tensor:
        return torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(seed))

    return make


@zoo_entry("resnet", family="resnet", kind="cnn", notes="bottleneck blocks, BatchNorm")
def resnet(tier: str) -> hf.PreTrainedModel:
    if tier == "full":
        return hf.ResNetModel(hf.ResNetConfig())  # ResNet-50 layout
    return hf.ResNetModel(hf.ResNetConfig(embedding_size=16, hidden_sizes=[16, 32],
                                          depths=[1, 1], layer_type="bottleneck",
                                          image_size=32))


class SmallCNN(nn.Module):
    """Conv-BN-ReLU stages, a pool and a classifier: the plainest CNN there is."""

    def __init__(self, width: int = 8, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(2 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


@zoo_entry("small_cnn", family="cnn", kind="cnn", inputs=image_inputs(32),
           notes="plain torch Sequential CNN")
def small_cnn(tier: str) -> nn.Module:
    return SmallCNN(width=8 if tier == "tiny" else 64)
