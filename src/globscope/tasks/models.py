"""The architectures of the built-in tasks: small, so that zoos train in minutes on a CPU."""

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
