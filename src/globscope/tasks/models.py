"""The architectures of the built-in tasks: small, so that zoos train in minutes on a CPU."""

import torch
from torch import nn


def mlp(n_in: int, hidden: tuple[int, ...], n_out: int) -> nn.Sequential:
    """Flatten, then Linear-ReLU blocks, then a linear classifier."""
    layers: list[nn.Module] = [nn.Flatten()]
    for h in hidden:
        layers += [nn.Linear(n_in, h), nn.ReLU()]
        n_in = h
    layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)


def small_cnn(n_classes: int = 10) -> nn.Sequential:
    """Two conv-BatchNorm-ReLU-maxpool blocks (8 and 16 channels) and a linear classifier, 28×28 input."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 7 * 7, n_classes),
    )


class BasicBlock(nn.Module):
    """A ResNet basic block: conv3×3-BN-ReLU-conv3×3-BN plus the shortcut, then ReLU.

    The shortcut is the identity where input and output have the same shape; where the stride or
    the channel count changes it is a projection, a 1×1 convolution (with that stride) and BatchNorm.
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))
        else:
            self.shortcut = nn.Identity()

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


def small_resnet(n_classes: int = 10, widths: tuple[int, int, int] = (16, 32, 64)) -> nn.Sequential:
    """A small ResNet for 28×28 single-channel images (about 0.15 M parameters).

    A stride-2 conv3×3-BN-ReLU stem (28→14), then four basic blocks: 16→16 (identity shortcut),
    16→32 stride 2 (projection, 14→7), 32→64 stride 2 (projection, 7→4), 64→64 (identity), global
    average pooling and a linear classifier. An ``nn.Sequential`` of these modules, so that tools
    that open Sequentials see the residual blocks by name (re-basin refuses them).
    """
    a, b, c = widths
    return nn.Sequential(
        nn.Conv2d(1, a, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(a), nn.ReLU(),
        BasicBlock(a, a), BasicBlock(a, b, stride=2), BasicBlock(b, c, stride=2), BasicBlock(c, c),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, n_classes),
    )
