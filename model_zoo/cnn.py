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


@zoo_entry("resnet", family="resnet", kind="cnn",
           pretrained="microsoft/resnet-50",
           notes="bottleneck blocks, BatchNorm")
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


@zoo_entry("mobilenet_v2", family="mobilenet", kind="cnn",
           pretrained="google/mobilenet_v2_1.0_224",
           notes="inverted residuals, depthwise convs, ReLU6")
def mobilenet_v2(tier: str) -> hf.PreTrainedModel:
    if tier == "full":
        return hf.MobileNetV2Model(hf.MobileNetV2Config())
    return hf.MobileNetV2Model(hf.MobileNetV2Config(image_size=32, depth_multiplier=0.25,
                                                    min_depth=4))


@zoo_entry("convnext", family="convnext", kind="cnn",
           pretrained="facebook/convnext-tiny-224",
           notes="depthwise 7x7, LayerNorm on channels-last, layer scale")
def convnext(tier: str) -> hf.PreTrainedModel:
    if tier == "full":
        return hf.ConvNextModel(hf.ConvNextConfig())
    return hf.ConvNextModel(hf.ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1],
                                              num_stages=2, image_size=32))


@zoo_entry("efficientnet", family="efficientnet", kind="cnn",
           pretrained="google/efficientnet-b0",
           notes="MBConv with squeeze-excitation, SiLU")
def efficientnet(tier: str) -> hf.PreTrainedModel:
    if tier == "full":
        return hf.EfficientNetModel(hf.EfficientNetConfig())
    return hf.EfficientNetModel(hf.EfficientNetConfig(
        image_size=32, width_coefficient=0.1, depth_coefficient=0.1, hidden_dim=128,
        in_channels=[32, 16], out_channels=[16, 24], kernel_sizes=[3, 3], strides=[1, 2],
        num_block_repeats=[1, 1], expand_ratios=[1, 6], depthwise_padding=[]))


@zoo_entry("regnet", family="regnet", kind="cnn",
           pretrained="facebook/regnet-y-040",
           notes="grouped convs, squeeze-excitation")
def regnet(tier: str) -> hf.PreTrainedModel:
    if tier == "full":
        return hf.RegNetModel(hf.RegNetConfig())
    return hf.RegNetModel(hf.RegNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                                          groups_width=8, layer_type="y"))
