"""EfficientNet-B0 (Tan & Le 2019), parameter for parameter like torchvision's efficientnet_b0."""

from __future__ import annotations

import torch
from torch import Tensor, nn

# (expand ratio, kernel, stride, output channels, repeats) per stage
B0_STAGES = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)


def _conv_bn_act(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1,
                 act: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
              nn.BatchNorm2d(cout)]  # PyTorch defaults, as torchvision's B0
    if act:
        layers.append(nn.SiLU(inplace=True))
    return nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeeze, 1)
        self.expand = nn.Conv2d(squeeze, channels, 1)
        self.act = nn.SiLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.expand(self.act(self.reduce(s))))


class MBConv(nn.Module):
    """Inverted residual: [1x1 expand] -> depthwise kxk -> SE -> 1x1 project (+ skip)."""

    def __init__(self, cin: int, cout: int, expand: int, k: int, stride: int) -> None:
        super().__init__()
        mid = cin * expand
        layers = [_conv_bn_act(cin, mid, 1)] if expand != 1 else []
        layers += [
            _conv_bn_act(mid, mid, k, stride, groups=mid),
            SqueezeExcite(mid, max(1, cin // 4)),  # SE ratio 0.25 of the block input
            _conv_bn_act(mid, cout, 1, act=False),
        ]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        y = self.body(x)
        return x + y if self.residual else y


class EfficientNet(nn.Module):
    """EfficientNet; ``features`` ends with 1x1 conv + BN + swish + global average pooling.

    ``dropout`` (default 0.0) is applied between ``features`` and ``head`` in train mode only;
    the original uses 0.2, but 0.0 keeps ``forward == head(features)`` exact in both modes.
    No stochastic depth.
    """

    activation = "swish"

    def __init__(self, stages=B0_STAGES, num_classes: int = 1000, dropout: float = 0.0,
                 feature_dim: int = 1280) -> None:
        super().__init__()
        blocks, cin = [_conv_bn_act(3, 32, 3, 2)], 32
        for expand, k, stride, cout, repeats in stages:
            for j in range(repeats):
                blocks.append(MBConv(cin, cout, expand, k, stride if j == 0 else 1))
                cin = cout
        blocks.append(_conv_bn_act(cin, feature_dim, 1))
        self.body = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.feature_dim = feature_dim
        self.head = nn.Linear(feature_dim, num_classes)  # PyTorch default init
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def features(self, x: Tensor) -> Tensor:
        return torch.flatten(self.pool(self.body(x)), 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.dropout(self.features(x)))


def efficientnet_b0(num_classes: int = 1000, dropout: float = 0.0) -> EfficientNet:
    """EfficientNet-B0: 5,288,548 parameters with 1000 classes (same as torchvision)."""
    return EfficientNet(B0_STAGES, num_classes, dropout)
