"""Networks for the lessons, each ending in an ``nn.Linear`` classifier.

``build_model(arch, input_shape, n_outputs)`` returns a complete network. Its last module in
``named_modules()`` order is an ``nn.Linear`` that is also the last operation of ``forward``, so
``alraofy`` can replace it by Alrao's heads and the SGD and Adam baselines train the same network.

``width`` scales the number of hidden units or filters of every layer before the classifier.
Alrao's result depends on it: a wider network has more features, so more of them draw a usable
learning rate. What each architecture scales:

=============  ===========================================================================
mlp            two hidden layers of ``128 * width`` units
cnn            three convolutions of ``32 * width``, ``64 * width`` and ``64 * width`` filters
resnet         three residual stages of ``16 * width``, ``32 * width`` and ``64 * width`` filters
mobilenet_v2   torchvision's ``width_mult = width`` (channels rounded to multiples of 8)
vgg19          every convolution's filters, ``64 * width`` up to ``512 * width``
googlenet      every convolution of the stem and of each inception block, ``1024 * width``
               features before the classifier
=============  ===========================================================================

The three torchvision networks follow the CIFAR-10 experiments of Blier, Wolinski and Ollivier
(2019), whose code used the CIFAR-10 versions from kuangliu/pytorch-cifar: a stride-1 3x3 stem
with no early downsampling, BatchNorm after every convolution, and one linear classifier on
globally pooled features. Details stay torchvision's where they differ from that code.
MobileNetV2 uses ReLU6 and adds a residual connection only where a block keeps its shape.
GoogLeNet keeps its 64-64-192 stem convolutions and its dropout before the classifier.
"""

from __future__ import annotations

import math
import numbers
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import torch
from torch import nn

MLP_HIDDEN_UNITS = 128
CNN_FILTERS = (32, 64, 64)
RESNET_FILTERS = (16, 32, 64)

# Default torchvision MobileNetV2 setting (expansion t, channels c, blocks n, stride s), with the
# second stage's stride set to 1 as in the CIFAR-10 version: 32x32 inputs end at 4x4.
MOBILENET_V2_SMALL_IMAGE_SETTING = [
    [1, 16, 1, 1],
    [6, 24, 2, 1],
    [6, 32, 3, 2],
    [6, 64, 4, 2],
    [6, 96, 3, 1],
    [6, 160, 3, 2],
    [6, 320, 1, 1],
]


@dataclass(frozen=True)
class ArchitectureInfo:
    """Registry entry: a description and the input shapes an architecture accepts.

    ``input_ranks`` lists the accepted lengths of ``input_shape`` (None: any length), and
    ``min_side`` the smallest accepted spatial side (every entry after the channel count).
    """

    name: str
    description: str
    input_ranks: tuple[int, ...] | None
    min_side: int = 1

    def accepts(self, input_shape: Sequence[int]) -> bool:
        """Return True if ``build_model`` accepts ``input_shape`` for this architecture."""
        try:
            _check_input_shape(self, tuple(input_shape))
        except ValueError:
            return False
        return True


ARCHITECTURES: Mapping[str, ArchitectureInfo] = MappingProxyType({
    "mlp": ArchitectureInfo(
        "mlp", "multilayer perceptron: flatten, two ReLU hidden layers", input_ranks=None,
    ),
    "cnn": ArchitectureInfo(
        "cnn", "three 3x3 convolutions with BatchNorm and ReLU, global average pooling",
        input_ranks=(2, 3), min_side=2,
    ),
    "resnet": ArchitectureInfo(
        "resnet", "small ResNet: a stem and three basic residual blocks with BatchNorm",
        input_ranks=(2, 3),
    ),
    "mobilenet_v2": ArchitectureInfo(
        "mobilenet_v2", "torchvision's MobileNetV2 adapted to small images", input_ranks=(3,),
    ),
    "vgg19": ArchitectureInfo(
        "vgg19", "torchvision's VGG19 with BatchNorm adapted to small images", input_ranks=(3,),
    ),
    "googlenet": ArchitectureInfo(
        "googlenet", "torchvision's GoogLeNet adapted to small images", input_ranks=(3,),
        min_side=2,
    ),
})

_SHAPE_NAMES = {1: "(D,)", 2: "(C, L)", 3: "(C, H, W)"}


def architecture_names() -> list[str]:
    """List the registered architecture names."""
    return list(ARCHITECTURES)


def build_model(
    arch: str,
    input_shape: Sequence[int],
    n_outputs: int,
    *,
    width: int = 1,
    seed: int | None = None,
) -> nn.Module:
    """Build a freshly initialised network that ends in an ``nn.Linear`` classifier.

    Args:
        arch: one of ``architecture_names()``.
        input_shape: shape of one example, without the batch dimension: ``(D,)`` for vectors,
            ``(C, L)`` for 1-D signals, ``(C, H, W)`` for images.
        n_outputs: output size of the classifier (the class count, or the regression target size).
        width: positive integer multiplier of the hidden units or filters (see the module doc).
        seed: if given, initialise the weights from this seed without touching PyTorch's global
            random state. If None, draw them from the global generator as PyTorch modules do.

    Returns:
        A module mapping ``[B, *input_shape]`` to ``[B, n_outputs]``.

    Raises:
        ValueError: for an unknown architecture, an input shape it cannot take, or an invalid
            ``n_outputs``, ``width`` or ``seed``.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(
            f"Unknown architecture {arch!r}; valid names are: {', '.join(ARCHITECTURES)}"
        )
    shape = _validated_shape(input_shape)
    _check_positive_int("n_outputs", n_outputs)
    _check_positive_int("width", width)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"seed must be None or an integer; got {seed!r}")
    _check_input_shape(ARCHITECTURES[arch], shape)

    builder = _BUILDERS[arch]
    if seed is None:
        return builder(shape, n_outputs, width)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return builder(shape, n_outputs, width)


def _validated_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    try:
        shape = tuple(input_shape)
    except TypeError:
        raise ValueError(
            f"input_shape must be a sequence of positive integers; got {input_shape!r}"
        ) from None
    valid = len(shape) > 0 and all(
        isinstance(side, numbers.Integral) and not isinstance(side, bool) and side > 0
        for side in shape
    )
    if not valid:
        raise ValueError(f"input_shape must be a sequence of positive integers; got {input_shape!r}")
    return tuple(int(side) for side in shape)


def _check_positive_int(argument: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{argument} must be a positive integer; got {value!r}")


def _check_input_shape(info: ArchitectureInfo, shape: tuple[int, ...]) -> None:
    if info.input_ranks is not None and len(shape) not in info.input_ranks:
        accepted = " or ".join(_SHAPE_NAMES[rank] for rank in info.input_ranks)
        raise ValueError(
            f"architecture {info.name!r} needs an input of shape {accepted}; got {shape}"
        )
    if any(side < info.min_side for side in shape[1:]):
        raise ValueError(
            f"architecture {info.name!r} needs spatial sides of at least {info.min_side}; "
            f"got {shape}"
        )


# ---------------------------------------------------------------------------------------------
# Networks defined here. Each is an nn.Sequential of `features` (input to a flat feature vector)
# and `classifier` (the final nn.Linear).


def _build_mlp(shape: tuple[int, ...], n_outputs: int, width: int) -> nn.Module:
    hidden = MLP_HIDDEN_UNITS * width
    features = nn.Sequential(
        nn.Flatten(),
        nn.Linear(math.prod(shape), hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
    )
    return _features_then_classifier(features, nn.Linear(hidden, n_outputs))


def _layer_types(shape: tuple[int, ...]) -> tuple[type, type, type, type]:
    """Return the convolution, BatchNorm, max-pool and adaptive average-pool classes for 1-D
    signals ``(C, L)`` or 2-D images ``(C, H, W)``."""
    if len(shape) == 2:
        return nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d, nn.AdaptiveAvgPool1d
    return nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d


def _build_cnn(shape: tuple[int, ...], n_outputs: int, width: int) -> nn.Module:
    conv, norm, max_pool, average_pool = _layer_types(shape)
    first, second, third = (filters * width for filters in CNN_FILTERS)
    # No convolution bias: the BatchNorm after each convolution subtracts it again.
    features = nn.Sequential(
        conv(shape[0], first, kernel_size=3, padding=1, bias=False),
        norm(first),
        nn.ReLU(),
        conv(first, second, kernel_size=3, padding=1, bias=False),
        norm(second),
        nn.ReLU(),
        max_pool(2),
        conv(second, third, kernel_size=3, padding=1, bias=False),
        norm(third),
        nn.ReLU(),
        average_pool(1),
        nn.Flatten(),
    )
    return _features_then_classifier(features, nn.Linear(third, n_outputs))


class BasicBlock(nn.Module):
    """Residual block: two 3x3 convolutions with BatchNorm, added to the input.

    The shortcut is a 1x1 convolution with BatchNorm when the stride or the channel count
    changes, and the identity otherwise. Works in 1-D or 2-D through ``conv`` and ``norm``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        conv: Callable[..., nn.Module],
        norm: Callable[[int], nn.Module],
    ) -> None:
        super().__init__()
        self.conv1 = conv(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = norm(out_channels)
        self.conv2 = conv(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = norm(out_channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                conv(in_channels, out_channels, 1, stride=stride, bias=False),
                norm(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


def _build_resnet(shape: tuple[int, ...], n_outputs: int, width: int) -> nn.Module:
    conv, norm, _, average_pool = _layer_types(shape)
    first, second, third = (filters * width for filters in RESNET_FILTERS)
    features = nn.Sequential(
        conv(shape[0], first, kernel_size=3, padding=1, bias=False),
        norm(first),
        nn.ReLU(),
        BasicBlock(first, first, stride=1, conv=conv, norm=norm),
        BasicBlock(first, second, stride=2, conv=conv, norm=norm),
        BasicBlock(second, third, stride=2, conv=conv, norm=norm),
        average_pool(1),
        nn.Flatten(),
    )
    return _features_then_classifier(features, nn.Linear(third, n_outputs))


def _features_then_classifier(features: nn.Module, classifier: nn.Linear) -> nn.Sequential:
    return nn.Sequential(OrderedDict(features=features, classifier=classifier))


# ---------------------------------------------------------------------------------------------
# torchvision networks, adapted to small images with C input channels


def _build_mobilenet_v2(shape: tuple[int, ...], n_outputs: int, width: int) -> nn.Module:
    from torchvision.models import mobilenet_v2
    from torchvision.ops import Conv2dNormActivation

    model = mobilenet_v2(
        num_classes=n_outputs,
        width_mult=float(width),
        inverted_residual_setting=MOBILENET_V2_SMALL_IMAGE_SETTING,
    )

    # Stem: stride 1 in place of 2, and C input channels in place of 3.
    stem_channels = model.features[0][0].out_channels
    stem = Conv2dNormActivation(
        shape[0], stem_channels, stride=1, norm_layer=nn.BatchNorm2d, activation_layer=nn.ReLU6
    )
    nn.init.kaiming_normal_(stem[0].weight, mode="fan_out")  # as torchvision initialises convs
    model.features[0] = stem
    return model


def _build_vgg19(shape: tuple[int, ...], n_outputs: int, width: int) -> nn.Module:
    from torchvision.models import VGG
    from torchvision.models.vgg import cfgs, make_layers

    # Configuration "E" is VGG19: 16 convolutions (numbers of filters) and 5 max-pools ("M").
    config = [entry if entry == "M" else entry * width for entry in cfgs["E"]]
    features = make_layers(config, batch_norm=True)
    features[0] = nn.Conv2d(shape[0], config[0], kernel_size=3, padding=1)

    # A max-pool halves both sides, so the pools that would shrink a side below 1 pixel are
    # dropped: a 32x32 image keeps all 5, a 28x28 one 4, an 8x8 one 3.
    sides = shape[1:]
    for index, layer in enumerate(features):
        if isinstance(layer, nn.MaxPool2d):
            if min(sides) < 2:
                features[index] = nn.Identity()
            else:
                sides = tuple(side // 2 for side in sides)

    # VGG initialises the features it is given: Kaiming for convolutions, ones and zeros for
    # BatchNorm.
    model = VGG(features, num_classes=n_outputs, init_weights=True)

    # One linear classifier on the globally pooled features, in place of the 3-layer ImageNet
    # classifier on 7x7 features.
    model.avgpool = nn.AdaptiveAvgPool2d(1)
    last_filters = [entry for entry in config if entry != "M"][-1]
    model.classifier = nn.Linear(last_filters, n_outputs)
    nn.init.normal_(model.classifier.weight, 0.0, 0.01)  # as torchvision initialises VGG
    nn.init.zeros_(model.classifier.bias)
    return model


def _build_googlenet(shape: tuple[int, ...], n_outputs: int, width: int) -> nn.Module:
    from torchvision.models import GoogLeNet
    from torchvision.models.googlenet import BasicConv2d, Inception, InceptionAux

    # torchvision builds the stem and the inception blocks from these factories, so scaling every
    # channel count they receive scales the whole network.
    def scaled_conv(in_channels: int, out_channels: int, **options) -> nn.Module:
        return BasicConv2d(in_channels * width, out_channels * width, **options)

    def scaled_inception(*channels: int) -> nn.Module:
        return Inception(*(count * width for count in channels))

    model = GoogLeNet(
        num_classes=n_outputs,
        aux_logits=False,
        transform_input=False,
        init_weights=True,
        blocks=[scaled_conv, scaled_inception, InceptionAux],
    )

    # Stem: a 3x3 stride-1 convolution from C channels in place of 7x7 stride 2, and no max-pool
    # before the inception blocks, so a 32x32 image reaches them at 32x32.
    model.conv1 = BasicConv2d(shape[0], 64 * width, kernel_size=3, padding=1)
    model.maxpool1 = nn.Identity()
    model.maxpool2 = nn.Identity()
    model.fc = nn.Linear(1024 * width, n_outputs)

    # As torchvision initialises GoogLeNet's convolutions and linear layers.
    for layer in (model.conv1.conv, model.fc):
        nn.init.trunc_normal_(layer.weight, mean=0.0, std=0.01, a=-2, b=2)
    return model


_BUILDERS: dict[str, Callable[[tuple[int, ...], int, int], nn.Module]] = {
    "mlp": _build_mlp,
    "cnn": _build_cnn,
    "resnet": _build_resnet,
    "mobilenet_v2": _build_mobilenet_v2,
    "vgg19": _build_vgg19,
    "googlenet": _build_googlenet,
}
