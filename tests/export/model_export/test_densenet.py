"""DenseNet-121 matches timm's `densenet121(in_chans=1)` + `Sequential(Linear)` head: every
state-dict key and shape, the parameter count, and the forward computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model_export.densenet import CheckpointWrapper, DenseNet121, densenet_config

pytestmark = pytest.mark.export


def _bn(prefix: str, channels: int) -> list[tuple[str, tuple[int, ...]]]:
    # timm's BatchNormAct2d is a BatchNorm2d: plain BatchNorm keys, num_batches_tracked included
    return [
        (f"{prefix}.weight", (channels,)),
        (f"{prefix}.bias", (channels,)),
        (f"{prefix}.running_mean", (channels,)),
        (f"{prefix}.running_var", (channels,)),
        (f"{prefix}.num_batches_tracked", ()),
    ]


def timm_densenet121_keys(num_classes: int) -> list[tuple[str, tuple[int, ...]]]:
    """timm/models/densenet.py, written out for densenet121 (growth 32, blocks 6-12-24-16,
    bn_size 4, 64 stem channels) with in_chans=1 and classifier = Sequential(Linear)."""
    keys = [("features.conv0.weight", (64, 1, 7, 7)), *_bn("features.norm0", 64)]
    channels = 64
    for block, layers in enumerate((6, 12, 24, 16), start=1):
        for layer in range(1, layers + 1):
            p = f"features.denseblock{block}.denselayer{layer}"
            inputs = channels + (layer - 1) * 32
            keys += _bn(f"{p}.norm1", inputs)
            keys.append((f"{p}.conv1.weight", (128, inputs, 1, 1)))
            keys += _bn(f"{p}.norm2", 128)
            keys.append((f"{p}.conv2.weight", (32, 128, 3, 3)))
        channels += layers * 32
        if block < 4:
            keys += _bn(f"features.transition{block}.norm", channels)
            keys.append(
                (f"features.transition{block}.conv.weight", (channels // 2, channels, 1, 1))
            )
            channels //= 2
    keys += _bn("features.norm5", channels)
    keys += [("classifier.0.weight", (num_classes, 1024)), ("classifier.0.bias", (num_classes,))]
    return keys


@pytest.mark.parametrize("num_classes", [2, 6])
def test_state_dict_is_timm_densenet121_in_chans_1(num_classes: int) -> None:
    model = DenseNet121(densenet_config("full", num_classes=num_classes))
    got = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert got == timm_densenet121_keys(num_classes)
    # 120 convolutions, 121 BatchNorms (2 parameters + 3 buffers each), one Linear
    assert len(got) == 727
    assert len(list(model.parameters())) == 364
    assert len(list(model.buffers())) == 363
    assert model.num_features == 1024


def test_parameter_count_is_timm_densenet121_with_one_input_channel_and_six_classes() -> None:
    model = DenseNet121(densenet_config("full", num_classes=6))
    # timm/torchvision densenet121: 7,978,856 parameters with 3 input channels and 1000
    # classes; minus 64*2*7*7 stem weights and 994 rows (+bias) of the classifier
    assert sum(p.numel() for p in model.parameters()) == 7_978_856 - 6_272 - 994 * 1025


def test_checkpoint_wrapper_adds_the_model_prefix() -> None:
    model = DenseNet121(densenet_config("tiny", num_classes=2))
    keys = list(CheckpointWrapper(model).state_dict())
    assert keys[0] == "model.features.conv0.weight"
    assert keys[-2:] == ["model.classifier.0.weight", "model.classifier.0.bias"]


def test_tiny_config_shrinks_through_the_same_structure() -> None:
    cfg = densenet_config("tiny", num_classes=6)
    assert (cfg.growth_rate, cfg.block_config, cfg.num_init_features) == (8, (2, 2, 2, 2), 16)
    model = DenseNet121(cfg)
    assert model.num_features == cfg.num_features == 32
    assert "features.denseblock4.denselayer2.conv2.weight" in model.state_dict()
    assert model(torch.zeros(3, 1, 192, 64)).shape == (3, 6)


def _bn_relu(x: torch.Tensor, sd: dict[str, torch.Tensor], p: str) -> torch.Tensor:
    y = F.batch_norm(
        x,
        sd[f"{p}.running_mean"],
        sd[f"{p}.running_var"],
        sd[f"{p}.weight"],
        sd[f"{p}.bias"],
        training=False,
        eps=1e-5,
    )
    return F.relu(y)


def reference_forward(
    sd: dict[str, torch.Tensor], x: torch.Tensor, blocks: tuple[int, ...]
) -> torch.Tensor:
    """timm's DenseNet forward written with torch.nn.functional from the state dict alone."""
    x = F.conv2d(x, sd["features.conv0.weight"], stride=2, padding=3)
    x = F.max_pool2d(_bn_relu(x, sd, "features.norm0"), kernel_size=3, stride=2, padding=1)
    for b, layers in enumerate(blocks, start=1):
        features = [x]
        for i in range(1, layers + 1):
            p = f"features.denseblock{b}.denselayer{i}"
            h = _bn_relu(torch.cat(features, 1), sd, f"{p}.norm1")
            h = F.conv2d(h, sd[f"{p}.conv1.weight"])
            h = F.conv2d(_bn_relu(h, sd, f"{p}.norm2"), sd[f"{p}.conv2.weight"], padding=1)
            features.append(h)
        x = torch.cat(features, 1)
        if b < len(blocks):
            p = f"features.transition{b}"
            x = F.conv2d(_bn_relu(x, sd, f"{p}.norm"), sd[f"{p}.conv.weight"])
            x = F.avg_pool2d(x, kernel_size=2, stride=2)
    x = _bn_relu(x, sd, "features.norm5")  # timm: norm5 is a BatchNormAct2d, ReLU included
    x = x.mean(dim=(2, 3))
    return F.linear(x, sd["classifier.0.weight"], sd["classifier.0.bias"])


def test_forward_is_timms_bn_relu_dense_blocks_then_average_pool_and_linear() -> None:
    torch.manual_seed(0)
    cfg = densenet_config("tiny", num_classes=6)
    model = DenseNet121(cfg).eval()
    # non-trivial BatchNorm statistics and affine parameters, so every BN matters
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                assert m.running_mean is not None and m.running_var is not None
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
        x = torch.randn(2, 1, 192, 64)
        got = model(x)
        want = reference_forward(model.state_dict(), x, cfg.block_config)
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-5, rtol=1e-5)
