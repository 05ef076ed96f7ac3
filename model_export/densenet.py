"""DenseNet-121 in plain PyTorch, state-dict compatible with timm's `densenet121(in_chans=1)`.

timm is not a dependency: this mirrors `timm/models/densenet.py` (DenseNet-BC with timm's
`BatchNormAct2d`, i.e. BatchNorm then ReLU in one module that *is* a BatchNorm2d, so its
state-dict keys are the plain BatchNorm ones) with the classifier the training code used,
`Sequential(Linear(num_features, num_classes))`. Keys: `features.conv0`, `features.norm0`,
`features.denseblock{i}.denselayer{j}.{norm1,conv1,norm2,conv2}`, `features.transition{i}.
{norm,conv}`, `features.norm5`, `classifier.0`. Forward: features (norm5 includes its ReLU),
global average pool, classifier; raw logits.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

Size = Literal["full", "tiny"]


@dataclass(frozen=True)
class DenseNetConfig:
    """timm's DenseNet arguments; `num_init_features` is `2 * growth_rate` there."""

    growth_rate: int = 32
    block_config: tuple[int, ...] = (6, 12, 24, 16)
    bn_size: int = 4
    in_chans: int = 1
    num_classes: int = 6

    @property
    def num_init_features(self) -> int:
        return 2 * self.growth_rate

    @property
    def num_features(self) -> int:
        """Channels after norm5 (1024 for DenseNet-121)."""
        n = self.num_init_features
        for i, layers in enumerate(self.block_config):
            n += layers * self.growth_rate
            if i != len(self.block_config) - 1:
                n //= 2
        return n


def densenet_config(size: Size = "full", *, num_classes: int, in_chans: int = 1) -> DenseNetConfig:
    """DenseNet-121 (`full`) or the shrunken test network (`tiny`: growth 8, blocks 2-2-2-2)."""
    if size == "full":
        return DenseNetConfig(num_classes=num_classes, in_chans=in_chans)
    if size == "tiny":
        return DenseNetConfig(
            growth_rate=8, block_config=(2, 2, 2, 2), num_classes=num_classes, in_chans=in_chans
        )
    raise ValueError(f"unknown size {size!r}")


class BatchNormAct2d(nn.BatchNorm2d):
    """timm's BatchNormAct2d (ReLU): a BatchNorm2d, so it keeps BatchNorm's state-dict keys."""

    def __init__(self, num_features: int) -> None:
        super().__init__(num_features)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(super().forward(x))


class DenseLayer(nn.Module):
    def __init__(self, num_input_features: int, growth_rate: int, bn_size: int) -> None:
        super().__init__()
        self.norm1 = BatchNormAct2d(num_input_features)
        self.conv1 = nn.Conv2d(
            num_input_features, bn_size * growth_rate, kernel_size=1, stride=1, bias=False
        )
        self.norm2 = BatchNormAct2d(bn_size * growth_rate)
        self.conv2 = nn.Conv2d(
            bn_size * growth_rate, growth_rate, kernel_size=3, stride=1, padding=1, bias=False
        )

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        bottleneck = self.conv1(self.norm1(torch.cat(features, 1)))
        return self.conv2(self.norm2(bottleneck))


class DenseBlock(nn.ModuleDict):
    def __init__(
        self, num_layers: int, num_input_features: int, bn_size: int, growth_rate: int
    ) -> None:
        super().__init__()
        for i in range(num_layers):
            layer = DenseLayer(num_input_features + i * growth_rate, growth_rate, bn_size)
            self.add_module(f"denselayer{i + 1}", layer)

    def forward(self, init_features: torch.Tensor) -> torch.Tensor:
        features = [init_features]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class DenseTransition(nn.Sequential):
    def __init__(self, num_input_features: int, num_output_features: int) -> None:
        super().__init__()
        self.add_module("norm", BatchNormAct2d(num_input_features))
        self.add_module(
            "conv",
            nn.Conv2d(num_input_features, num_output_features, kernel_size=1, stride=1, bias=False),
        )
        self.add_module("pool", nn.AvgPool2d(kernel_size=2, stride=2))


class DenseNet121(nn.Module):
    """timm `densenet121(in_chans=1)` with `classifier = Sequential(Linear(1024, num_classes))`.

    The default config is DenseNet-121; pass `densenet_config("tiny", ...)` for the test-size
    network built by the same code.
    """

    def __init__(self, config: DenseNetConfig | None = None) -> None:
        super().__init__()
        cfg = config or DenseNetConfig()
        self.config = cfg
        self.features = nn.Sequential(
            OrderedDict(
                [
                    (
                        "conv0",
                        nn.Conv2d(
                            cfg.in_chans,
                            cfg.num_init_features,
                            kernel_size=7,
                            stride=2,
                            padding=3,
                            bias=False,
                        ),
                    ),
                    ("norm0", BatchNormAct2d(cfg.num_init_features)),
                    ("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)),
                ]
            )
        )
        n = cfg.num_init_features
        for i, num_layers in enumerate(cfg.block_config):
            block = DenseBlock(num_layers, n, cfg.bn_size, cfg.growth_rate)
            self.features.add_module(f"denseblock{i + 1}", block)
            n += num_layers * cfg.growth_rate
            if i != len(cfg.block_config) - 1:
                self.features.add_module(f"transition{i + 1}", DenseTransition(n, n // 2))
                n //= 2
        self.features.add_module("norm5", BatchNormAct2d(n))
        self.num_features = n
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(n, cfg.num_classes))
        # timm's ("official torch") initialisation
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.constant_(m.bias, 0)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_pooled(self, x: torch.Tensor) -> torch.Tensor:
        """The `num_features`-dim vector the classifier sees."""
        return self.global_pool(self.forward_features(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_pooled(x))


class CheckpointWrapper(nn.Module):
    """The training code's wrapper: the DenseNet under `.model`, hence the `model.` key prefix.

    Original checkpoint files are `torch.save({"model_state_dict": wrapper.state_dict()})`.
    """

    def __init__(self, model: DenseNet121) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
