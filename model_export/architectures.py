"""PyTorch re-implementations of the sibling systems' models, from their descriptions
(docs/RECIPES.md; the numbers of each system are in its recipe's notes).

They exist for `python -m model_export demo --recipe`: deterministic random weights, marked
untrained, so every recipe runs end to end without anyone's checkpoints. A trained model comes
from its own framework through `model_export bundle --recipe ... --onnx` instead. Each takes
its inputs in the recipe's layout (NHWC for the Keras systems) and returns what the recipe's
output kind says (probabilities, or one sigmoid).

`tiny` shrinks the widths (test bundles); `full` is the described network.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

Size = Literal["full", "tiny"]


# ------------------------------------------------------------------------------ infant cry


class _Residual(nn.Module):
    """Conv 4x4 same -> BN -> LeakyReLU -> Conv 4x4 same -> BN -> + input -> LeakyReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 4, padding="same")
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 4, padding="same")
        self.bn2 = nn.BatchNorm2d(channels)
        self.act = nn.LeakyReLU(0.3)  # Keras' LeakyReLU default slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn1(self.conv1(x)))
        return self.act(self.bn2(self.conv2(y)) + x)


class _CryBranch(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, channels, 4)
        self.bn = nn.BatchNorm2d(channels)
        self.act = nn.LeakyReLU(0.3)
        self.blocks = nn.Sequential(_Residual(channels), _Residual(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # NHWC (N, H, 188, 1) in, Keras' Flatten order (H, W, C) out
        y = self.blocks(self.act(self.bn(self.stem(x.permute(0, 3, 1, 2)))))
        return y.permute(0, 2, 3, 1).flatten(1)


class InfantCryNet(nn.Module):
    """Two branches (MFCC 13x188, mel dB 128x188, NHWC) -> concatenated -> Dense relu ->
    Dense 2 softmax: probabilities."""

    def __init__(self, size: Size = "full", rows: tuple[int, int] = (13, 128), frames: int = 188):
        super().__init__()
        channels, hidden = (32, 64) if size == "full" else (2, 16)
        self.mfcc = _CryBranch(channels)
        self.mel = _CryBranch(channels)
        flat = sum((h - 3) * (frames - 3) * channels for h in rows)
        self.head = nn.Sequential(nn.Linear(flat, hidden), nn.ReLU(), nn.Linear(hidden, 2))

    def forward(self, mfcc: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        joined = torch.cat([self.mfcc(mfcc), self.mel(mel)], dim=1)
        return torch.softmax(self.head(joined), dim=-1)


# -------------------------------------------------------------------------------- dog bark


def _conv_bn(cin: int, cout: int, kernel: int, stride: int, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
    )


class _ChannelAttentionAsWritten(nn.Module):
    """CBAM's channel attention as the dog-bark code wrote it: the shared MLP on the average
    and the max pool, the sigmoid of their sum computed and discarded, avg * max returned (the
    input is never multiplied): (N, C, 1, 1)."""

    def __init__(self, channels: int, ratio: int = 8) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, max(1, channels // ratio), 1),
            nn.ReLU(),
            nn.Conv2d(max(1, channels // ratio), channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.mlp(torch.mean(x, dim=(2, 3), keepdim=True))
        mx = self.mlp(torch.amax(x, dim=(2, 3), keepdim=True))
        _ = torch.sigmoid(avg + mx)  # computed and discarded, as written
        return avg * mx


class _SpatialAttention(nn.Module):
    """x * sigmoid(conv7x7([mean over channels, max over channels]))."""

    def __init__(self, kernel: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat(
            [torch.mean(x, dim=1, keepdim=True), torch.amax(x, dim=1, keepdim=True)], dim=1
        )
        return x * torch.sigmoid(self.conv(pooled))


class DogBarkNet(nn.Module):
    """MobileNet (v1 layout) + CBAM -> global average pool -> Dense 3 softmax, NHWC in."""

    #: (output channels, stride) of the depthwise-separable blocks
    BLOCKS: tuple[tuple[int, int], ...] = (
        (64, 1),
        (128, 2),
        (128, 1),
        (256, 2),
        (256, 1),
        (512, 2),
        *((512, 1),) * 5,
        (1024, 2),
        (1024, 1),
    )

    def __init__(self, size: Size = "full", classes: int = 3) -> None:
        super().__init__()
        div = 1 if size == "full" else 16
        layers: list[nn.Module] = [_conv_bn(3, 32 // div, 3, 2)]
        cin = 32 // div
        for cout, stride in self.BLOCKS:
            cout //= div
            layers += [_conv_bn(cin, cin, 3, stride, groups=cin), _conv_bn(cin, cout, 1, 1)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.channel = _ChannelAttentionAsWritten(cin)
        self.spatial = _SpatialAttention()
        self.classifier = nn.Linear(cin, classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.features(image.permute(0, 3, 1, 2))
        x = self.spatial(self.channel(x))
        return torch.softmax(self.classifier(torch.mean(x, dim=(2, 3))), dim=-1)


# -------------------------------------------------------------------------- speech emotion


class KernelClassifier(nn.Module):
    """A stand-in for the speech-emotion SVC: RBF kernel values against stored support
    vectors (standardised inputs), a linear layer, softmax. Not scikit-learn's SVC (one-vs-one
    with Platt coupling): a real SVC comes through `bundle --onnx` from skl2onnx."""

    support: torch.Tensor
    mean: torch.Tensor
    scale: torch.Tensor

    def __init__(
        self, support: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor, classes: int
    ):
        super().__init__()
        self.register_buffer("support", support)
        self.register_buffer("mean", mean)
        self.register_buffer("scale", scale)
        self.gamma = 1.0 / support.shape[1]
        self.linear = nn.Linear(support.shape[0], classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = (features - self.mean) / self.scale
        distance = (
            (x * x).sum(dim=1, keepdim=True)
            - 2.0 * x @ self.support.T
            + (self.support * self.support).sum(dim=1)[None]
        )
        return torch.softmax(self.linear(torch.exp(-self.gamma * distance)), dim=-1)


# ---------------------------------------------------------------------------- speaker gender


class GenderCNN(nn.Module):
    """Conv 1 -> 16 -> 32 -> 64 (3x3, padding 1, ReLU, MaxPool 2) -> Flatten -> FC 128 ->
    FC 1 -> sigmoid, on (N, 1, 128, frames)."""

    def __init__(self, size: Size = "full", rows: int = 128, frames: int = 301) -> None:
        super().__init__()
        widths = (16, 32, 64) if size == "full" else (2, 4, 8)
        hidden = 128 if size == "full" else 16
        layers: list[nn.Module] = []
        cin = 1
        h, w = rows, frames
        for cout in widths:
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            cin, h, w = cout, h // 2, w // 2
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Linear(cin * h * w, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, mfcc: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.head(self.features(mfcc).flatten(1)))
