"""zoonet: zoo_core's own small CPU-friendly CNN family (conv-BN-ReLU, 3 stages).

Layout (the paths the plugin declares)::

    stem        Sequential(conv3x3, BN, ReLU)          first conv: "stem.0"
    stages      Sequential of 3 stages, "stages.0" .. "stages.2";
                each stage: a stride-2 conv-BN-ReLU block, then depth-1 stride-1 blocks
    pool        global average pool + flatten
    head        Linear(num_features, num_classes)      classifier: "head"

Made for 3x32x32 inputs (32 -> 16 -> 8 -> 4), any size >= 8 works thanks to the global
pooling. The API mirrors timm models: ``forward_features``, ``forward_head``,
``num_features``, ``get_classifier``, ``reset_classifier``.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ZooNet", "zoonet_s", "zoonet_m"]


def conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """3x3 conv (no bias) -> BatchNorm -> ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class ZooNet(nn.Module):
    """A plain conv-BN-ReLU network: ``stem`` -> ``stages`` (3) -> ``pool`` -> ``head``."""

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 3,
        stem_width: int = 16,
        widths: tuple[int, int, int] = (16, 32, 64),
        depth: int = 2,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if len(widths) != 3:
            raise ValueError(f"zoonet has exactly 3 stages, got widths={widths!r}")
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth!r}")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.stem = conv_bn_relu(in_chans, stem_width)
        stages, cin = [], stem_width
        for w in widths:
            blocks = [conv_bn_relu(cin, w, stride=2)]
            blocks += [conv_bn_relu(w, w) for _ in range(depth - 1)]
            stages.append(nn.Sequential(*blocks))
            cin = w
        self.stages = nn.Sequential(*stages)
        self.num_features = cin
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.head_drop = nn.Dropout(drop_rate)
        self.head: nn.Module = self._make_head(num_classes)
        self._init_weights()

    def _make_head(self, num_classes: int) -> nn.Module:
        if num_classes <= 0:
            return nn.Identity()
        head = nn.Linear(self.num_features, num_classes)
        nn.init.normal_(head.weight, std=0.01)
        nn.init.zeros_(head.bias)
        return head

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)

    # timm-style API -------------------------------------------------------------
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head with a freshly initialised one for ``num_classes`` (0: none)."""
        self.num_classes = num_classes
        self.head = self._make_head(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's feature map, ``(B, num_features, H/8, W/8)``."""
        return self.stages(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(self.pool(x))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def zoonet_s(num_classes: int = 10, **kwargs) -> ZooNet:
    """zoonet small: stem 16, stages (16, 32, 64), 2 blocks each (~76k params)."""
    cfg = dict(stem_width=16, widths=(16, 32, 64), depth=2)
    cfg.update(kwargs)
    return ZooNet(num_classes=num_classes, **cfg)


def zoonet_m(num_classes: int = 10, **kwargs) -> ZooNet:
    """zoonet medium: stem 32, stages (40, 80, 160), 2 blocks each (~0.46M params)."""
    cfg = dict(stem_width=32, widths=(40, 80, 160), depth=2)
    cfg.update(kwargs)
    return ZooNet(num_classes=num_classes, **cfg)
