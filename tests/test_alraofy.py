"""alraofy on ordinary networks and on torchvision classifiers (random weights, small inputs)."""

import math
import re

import pytest
import torch
from torch import nn
from torchvision import models

import alrao_edu as ae

pytestmark = pytest.mark.usefixtures("one_thread")

N_CLASSES = 10


def _vit():
    # A one-layer ViT on 32x32 images with 16x16 patches: 4 patches plus the class token.
    return models.VisionTransformer(
        image_size=32, patch_size=16, num_layers=1, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=N_CLASSES
    )


# (builder, input side in pixels). Each of these accepts 32x32 images, the size of CIFAR-10.
TORCHVISION_MODELS = [
    pytest.param(lambda: models.resnet18(weights=None, num_classes=N_CLASSES), 32, id="resnet18"),
    pytest.param(lambda: models.mobilenet_v2(weights=None, num_classes=N_CLASSES), 32, id="mobilenet_v2"),
    pytest.param(lambda: models.mobilenet_v3_small(weights=None, num_classes=N_CLASSES), 32, id="mobilenet_v3_small"),
    pytest.param(
        lambda: models.vgg11(weights=None, num_classes=N_CLASSES), 32, id="vgg11", marks=pytest.mark.slow
    ),  # 129 M parameters, 120 M of them in its 4096-wide classifier
    pytest.param(
        lambda: models.googlenet(weights=None, num_classes=N_CLASSES, aux_logits=False, init_weights=False), 32,
        id="googlenet",
    ),
    pytest.param(
        lambda: models.densenet121(weights=None, num_classes=N_CLASSES), 32, id="densenet121", marks=pytest.mark.slow
    ),
    pytest.param(lambda: models.efficientnet_b0(weights=None, num_classes=N_CLASSES), 32, id="efficientnet_b0"),
    pytest.param(
        lambda: models.convnext_tiny(weights=None, num_classes=N_CLASSES), 32, id="convnext_tiny", marks=pytest.mark.slow
    ),
    pytest.param(_vit, 32, id="vit"),
    pytest.param(lambda: models.regnet_x_400mf(weights=None, num_classes=N_CLASSES), 32, id="regnet_x_400mf"),
    pytest.param(lambda: models.shufflenet_v2_x0_5(weights=None, num_classes=N_CLASSES), 32, id="shufflenet_v2_x0_5"),
    pytest.param(lambda: models.mnasnet0_5(weights=None, num_classes=N_CLASSES), 32, id="mnasnet0_5"),
]


# ConvNeXt's layer scale and ViT's class token and attention have no feature
# rule; their fallback warning is tested in test_rates.py.
@pytest.mark.filterwarnings("ignore:alrao_edu has no feature rule")
@pytest.mark.parametrize(("build", "side"), TORCHVISION_MODELS)
def test_torchvision_model_trains(build, side):
    model = ae.alraofy(build(), n_heads=3, eta_min=1e-4, eta_max=1e-1, generator=torch.Generator().manual_seed(0))
    optimizer = ae.AlraoSGD(model)
    x, y = torch.randn(2, 3, side, side), torch.tensor([1, 7])
    heads_before = model.heads.weight.detach().clone()

    assert model(x).shape == (2, N_CLASSES)

    loss = model.training_loss(x, y)
    loss.backward()
    optimizer.step()
    model.update_switch()
    assert math.isfinite(loss.item())
    assert not torch.equal(model.heads.weight, heads_before)
    assert torch.isfinite(model.switch.posterior).all()


def test_squeezenet_rejected():
    message = "SqueezeNet has no nn.Linear layer, so alraofy cannot find its classifier layer"
    with pytest.raises(ValueError, match=re.escape(message)):
        ae.alraofy(models.squeezenet1_0(weights=None, num_classes=N_CLASSES))


def test_squeezenet_error_names_fix():
    with pytest.raises(ValueError, match=re.escape("AlraoModel(preclassifier, in_features=..., out_features=...)")):
        ae.alraofy(models.squeezenet1_0(weights=None, num_classes=N_CLASSES))


def test_bare_linear_rejected():
    message = "alraofy needs a network that contains a final nn.Linear, got a bare nn.Linear"
    with pytest.raises(ValueError, match=re.escape(message)):
        ae.alraofy(nn.Linear(4, 3))


def test_non_module_rejected():
    with pytest.raises(TypeError, match=re.escape("alraofy expects an nn.Module, got function")):
        ae.alraofy(lambda x: x)


class _ReshapeAfterClassifier(nn.Module):
    """A network whose last nn.Linear is not its last operation."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(4, 8)
        self.classifier = nn.Linear(8, 6)

    def forward(self, x):
        return self.classifier(torch.relu(self.body(x))).view(-1, 2)


def test_linear_not_last_caught_at_forward():
    model = ae.alraofy(_ReshapeAfterClassifier())
    message = "The preclassifier output has shape (12, 2), so 2 features, but the heads expect in_features=8"
    with pytest.raises(ValueError, match=re.escape(message)):
        model(torch.randn(3, 4))


def _mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def test_replaces_last_linear():
    model = ae.alraofy(_mlp())
    assert isinstance(model.preclassifier[2], nn.Identity)


def test_keeps_original_network():
    net = _mlp()
    ae.alraofy(net)
    assert isinstance(net[2], nn.Linear)


def test_copies_preclassifier_weights():
    net = _mlp()
    model = ae.alraofy(net)
    assert torch.equal(model.preclassifier[0].weight, net[0].weight)


def test_preclassifier_is_a_copy():
    net = _mlp()
    model = ae.alraofy(net)
    assert model.preclassifier[0].weight is not net[0].weight


def test_head_sizes_from_last_linear():
    model = ae.alraofy(_mlp(), n_heads=4)
    assert model.heads.weight.shape == (4, 3, 8)


def test_nested_last_linear():
    # torchvision puts the classifier inside a Sequential, e.g. classifier.1 in MobileNetV2.
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Sequential(nn.Dropout(0.0), nn.Linear(8, 3)))
    model = ae.alraofy(net)
    assert isinstance(model.preclassifier[2][1], nn.Identity)


def test_passes_options_on():
    model = ae.alraofy(_mlp(), n_heads=2, eta_min=1e-3, eta_max=1.0, task="regression", sigma2=0.5, theta=0.9)
    assert (model.n_heads, model.eta_min, model.eta_max, model.task, model.sigma2, model.switch.theta) == (
        2, 1e-3, 1.0, "regression", 0.5, 0.9,
    )
