"""Tests of the architecture registry: every network on inputs that fit it, its final
``nn.Linear`` classifier, width scaling, seeding and the input-shape errors."""

import pytest
import torch
from torch import nn

from alrao_edu.core.model import alraofy
from alrao_edu.training.architectures import ARCHITECTURES, architecture_names, build_model

ALL = ["mlp", "cnn", "resnet", "mobilenet_v2", "vgg19", "googlenet"]
TORCHVISION = ["mobilenet_v2", "vgg19", "googlenet"]

# Inputs that fit: spirals (2,), MNIST-1D (1, 40), digits (1, 8, 8) and a 3-channel image.
FITTING = [
    ("mlp", (2,)),
    ("mlp", (1, 8, 8)),
    ("cnn", (1, 40)),
    ("cnn", (1, 8, 8)),
    ("cnn", (3, 12, 10)),
    ("resnet", (1, 40)),
    ("resnet", (1, 8, 8)),
    ("mobilenet_v2", (1, 8, 8)),
    ("vgg19", (1, 8, 8)),
    ("googlenet", (3, 8, 8)),
]


def _last_module(model: nn.Module) -> nn.Module:
    return list(model.modules())[-1]


def test_registry_names():
    assert architecture_names() == ALL
    assert list(ARCHITECTURES) == ALL


@pytest.mark.parametrize("arch, shape", FITTING)
def test_forward_and_one_sgd_step(arch, shape):
    torch.manual_seed(0)
    model = build_model(arch, shape, 5)
    classifier = _last_module(model)
    classifier_outputs = []
    classifier.register_forward_hook(lambda module, inputs, output: classifier_outputs.append(output))
    x = torch.randn(2, *shape)
    y = torch.tensor([0, 4])
    first_weight = next(model.parameters())
    first_before = first_weight.detach().clone()
    classifier_before = classifier.weight.detach().clone()

    output = model(x)
    loss = nn.functional.cross_entropy(output, y)
    loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.01).step()

    assert isinstance(classifier, nn.Linear)
    assert classifier.out_features == 5
    assert output.shape == (2, 5)
    # The classifier is the last operation: its output is the model's output.
    assert len(classifier_outputs) == 1
    assert classifier_outputs[0] is output
    assert torch.isfinite(loss)
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
    # The step reaches both ends of the network.
    assert not torch.equal(classifier.weight, classifier_before)
    assert not torch.equal(first_weight, first_before)


@pytest.mark.parametrize("arch", ["mobilenet_v2", "googlenet", "cnn", "resnet"])
def test_cifar_sized_input(arch):
    model = build_model(arch, (3, 32, 32), 10).eval()

    with torch.no_grad():
        output = model(torch.randn(1, 3, 32, 32))

    assert output.shape == (1, 10)
    assert torch.isfinite(output).all()


@pytest.mark.parametrize("shape, pools", [((3, 32, 32), 5), ((1, 28, 28), 4), ((1, 2, 2), 1)])
def test_vgg19_drops_pools_on_small_images(shape, pools):
    model = build_model("vgg19", shape, 10).eval()

    pool_count = sum(isinstance(layer, nn.MaxPool2d) for layer in model.features)
    with torch.no_grad():
        output = model(torch.randn(1, *shape))

    assert pool_count == pools
    assert output.shape == (1, 10)


def test_torchvision_stems_take_input_channels():
    mobilenet = build_model("mobilenet_v2", (1, 8, 8), 10)
    vgg = build_model("vgg19", (2, 8, 8), 10)
    googlenet = build_model("googlenet", (1, 8, 8), 10)

    stem = mobilenet.features[0][0]
    assert stem.in_channels == 1
    assert stem.stride == (1, 1)
    assert vgg.features[0].in_channels == 2
    # An 8x8 image keeps 3 of VGG19's 5 max-pools.
    assert sum(isinstance(layer, nn.MaxPool2d) for layer in vgg.features) == 3
    assert googlenet.conv1.conv.in_channels == 1
    assert googlenet.conv1.conv.stride == (1, 1)
    assert googlenet.aux1 is None


@pytest.mark.parametrize("arch, shape, features_at_width", [
    ("mlp", (2,), 128),
    ("cnn", (1, 8, 8), 64),
    ("resnet", (1, 8, 8), 64),
    ("mobilenet_v2", (1, 8, 8), 1280),
    ("googlenet", (1, 8, 8), 1024),
])
def test_width_scales_features(arch, shape, features_at_width):
    narrow = build_model(arch, shape, 3, width=1)
    wide = build_model(arch, shape, 3, width=2)
    narrow_count = sum(parameter.numel() for parameter in narrow.parameters())
    wide_count = sum(parameter.numel() for parameter in wide.parameters())

    assert _last_module(narrow).in_features == features_at_width
    assert _last_module(wide).in_features == 2 * features_at_width
    assert wide_count > 2 * narrow_count
    with torch.no_grad():
        assert wide.eval()(torch.randn(2, *shape)).shape == (2, 3)


def test_vgg19_filters_scale_with_width(monkeypatch):
    # Building VGG19 at width 2 (80 million weights) takes seconds, so only the layer sizes are
    # checked, with the weight initialisation skipped.
    monkeypatch.setattr(nn.init, "kaiming_normal_", lambda tensor, **options: tensor)
    monkeypatch.setattr(nn.Conv2d, "reset_parameters", lambda self: None)

    model = build_model("vgg19", (1, 8, 8), 3, width=2)

    filters = [layer.out_channels for layer in model.features if isinstance(layer, nn.Conv2d)]
    assert len(filters) == 16
    assert filters[0] == 128
    assert filters[-1] == 1024
    assert model.classifier.in_features == 1024


def test_seed_fixes_weights():
    global_state = torch.random.get_rng_state()

    first = build_model("cnn", (1, 8, 8), 10, seed=3)
    again = build_model("cnn", (1, 8, 8), 10, seed=3)
    other = build_model("cnn", (1, 8, 8), 10, seed=4)

    assert torch.equal(torch.random.get_rng_state(), global_state)
    for name, tensor in first.state_dict().items():
        assert torch.equal(tensor, again.state_dict()[name]), name
    assert not torch.equal(first.classifier.weight, other.classifier.weight)


# VGG19 is left out to save time: its classifier is a plain `classifier` attribute, as in mlp.
@pytest.mark.parametrize("arch, shape", [("mlp", (2,)), ("cnn", (1, 40)), ("resnet", (1, 8, 8)),
                                         ("mobilenet_v2", (1, 8, 8)), ("googlenet", (1, 8, 8))])
def test_alraofy_splits_classifier(arch, shape):
    model = build_model(arch, shape, 4)

    alrao_model = alraofy(model, n_heads=2)
    output = alrao_model(torch.randn(2, *shape))

    assert output.shape == (2, 4)
    assert torch.isfinite(output).all()


def test_regression_output():
    model = build_model("mlp", (1,), 1)

    assert model(torch.randn(4, 1)).shape == (4, 1)


# ---------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize("arch, shape, message", [
    ("cnn", (2,), r"architecture 'cnn' needs an input of shape \(C, L\) or \(C, H, W\); "
                  r"got \(2,\)"),
    ("resnet", (1, 2, 3, 4), r"architecture 'resnet' needs an input of shape \(C, L\) or "
                             r"\(C, H, W\); got \(1, 2, 3, 4\)"),
    ("mobilenet_v2", (1, 40), r"architecture 'mobilenet_v2' needs an input of shape "
                              r"\(C, H, W\); got \(1, 40\)"),
    ("vgg19", (2,), r"architecture 'vgg19' needs an input of shape \(C, H, W\); got \(2,\)"),
    ("googlenet", (1, 40), r"architecture 'googlenet' needs an input of shape \(C, H, W\)"),
    ("cnn", (1, 1, 8), r"architecture 'cnn' needs spatial sides of at least 2; got \(1, 1, 8\)"),
    ("googlenet", (3, 1, 1), r"architecture 'googlenet' needs spatial sides of at least 2"),
])
def test_shape_errors(arch, shape, message):
    with pytest.raises(ValueError, match=message):
        build_model(arch, shape, 10)


def test_accepts_matches_build():
    cases = {
        ("mlp", (2,)): True,
        ("mlp", (3, 32, 32)): True,
        ("cnn", (2,)): False,
        ("cnn", (1, 40)): True,
        ("resnet", (1, 1, 1)): True,
        ("mobilenet_v2", (1, 40)): False,
        ("vgg19", (1, 8, 8)): True,
        ("googlenet", (3, 1, 1)): False,
    }
    for (arch, shape), accepted in cases.items():
        assert ARCHITECTURES[arch].accepts(shape) is accepted, (arch, shape)


def test_unknown_architecture():
    with pytest.raises(ValueError, match=r"Unknown architecture 'resnet50'; valid names are: "
                                         r"mlp, cnn, resnet, mobilenet_v2, vgg19, googlenet"):
        build_model("resnet50", (3, 32, 32), 10)


@pytest.mark.parametrize("argument, value", [("width", 0), ("width", 1.5), ("width", True),
                                             ("n_outputs", 0), ("n_outputs", -2),
                                             ("n_outputs", 2.0)])
def test_invalid_width_and_outputs(argument, value):
    options = {"n_outputs": 10, argument: value}
    n_outputs = options.pop("n_outputs")

    with pytest.raises(ValueError, match=rf"{argument} must be a positive integer; got {value!r}"):
        build_model("mlp", (2,), n_outputs, **options)


@pytest.mark.parametrize("shape", [(), (0, 8, 8), (1, -8), (1.0, 8), "abc", 5])
def test_invalid_input_shape(shape):
    with pytest.raises(ValueError, match=r"input_shape must be a sequence of positive integers"):
        build_model("mlp", shape, 10)


def test_invalid_seed():
    with pytest.raises(ValueError, match=r"seed must be None or an integer; got 1.5"):
        build_model("mlp", (2,), 10, seed=1.5)
