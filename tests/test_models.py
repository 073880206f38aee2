"""The model zoo against the paper's numbers: parameter counts (Table 6), mult-adds (Table 1),
torchvision compatibility of the option-B ImageNet nets, and the contract of build_model."""

from __future__ import annotations

import pickle

import pytest
import torch
import torchvision
from torch import nn

from benchmark import ModelError
from benchmark.models import (
    BasicBlock,
    PreActBasicBlock,
    PreActBottleneck,
    ProjectionShortcut,
    ShortcutA,
    build_model,
    cifar_n,
    cifar_resnet,
    count_multiply_adds,
    count_parameters,
    list_models,
    model_info,
    register_model,
)
from benchmark.models.cli import format_parameters

# Exact option-A counts (derived; reference file, Table 6 section) and Table 6's rounding.
TABLE_6_PARAMETERS = {
    "resnet20": (269_722, "0.27M"),
    "resnet32": (464_154, "0.46M"),
    "resnet44": (658_586, "0.66M"),
    "resnet56": (853_018, "0.85M"),
    "resnet110": (1_727_962, "1.7M"),
    "resnet1202": (19_421_274, "19.4M"),
}
OPTION_B_PARAMETERS = {"resnet20": 272_474, "resnet32": 466_906, "resnet44": 661_338, "resnet56": 855_770}
# torchvision's own metadata (ResNet*_Weights.meta["num_params"]).
TORCHVISION_PARAMETERS = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160, 152: 60_192_808}
# Table 1, "FLOPs" (multiply-adds), in units of 10^9.
TABLE_1_MULTIPLY_ADDS = {"resnet18": 1.8, "resnet34": 3.6, "resnet50": 3.8, "resnet101": 7.6, "resnet152": 11.3}


def on_meta(name: str, **options: object) -> nn.Module:
    """Shapes only, no memory or init cost: enough for counting parameters and mult-adds."""
    with torch.device("meta"):
        return build_model(name, **options)


# The relatives whose forward pass costs over 1G mult-adds at 32x32 (WRN-16-8 to ResNeXt-29 16x64d):
# they also end in global pooling after three stages, so 16x16 (maps of 16/8/4 pixels) still runs
# every layer, at a quarter of the cost. Their full-size forward runs in tests/test_relatives_models.py.
LARGE_CIFAR = {"wrn16_8", "wrn28_10", "wrn40_4", "resnext29_8x64d", "resnext29_16x64d", "densenet_bc190_40",
               "densenet_bc250_24", "preact_resnet1001"}
# Deep or large enough that forward + backward takes many seconds on a 2-core CPU: marked slow (a
# forward-only stand-in at batch 2 covers each in the fast suite).
SLOW = {"resnet1202", "preact_resnet1001", "wrn28_10", "resnext29_16x64d", "densenet_bc190_40", "densenet_bc250_24"}


def sample_input(name: str, batch: int = 2) -> torch.Tensor:
    # ImageNet nets end in global pooling, so 64x64 exercises every layer at 1/12 of the cost.
    size = (16 if name in LARGE_CIFAR else 32) if model_info(name).family == "cifar" else 64
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))


# ---------------------------------------------------------------- parameters (Table 6)


@pytest.mark.parametrize("name", sorted(TABLE_6_PARAMETERS))
def test_option_a_parameters_match_table_6(name: str) -> None:
    exact, rounded = TABLE_6_PARAMETERS[name]
    parameters = count_parameters(on_meta(name))
    assert parameters == exact
    assert format_parameters(parameters) == rounded  # Table 6's rounding, as `list` prints it


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110])
def test_plain_net_has_the_parameters_of_its_option_a_twin(depth: int) -> None:
    # Section 4.2: option A makes the residual nets "exactly the same depth, width, and number
    # of parameters as the plain counterparts".
    assert count_parameters(on_meta(f"plain{depth}")) == TABLE_6_PARAMETERS[f"resnet{depth}"][0]


@pytest.mark.parametrize("name", sorted(OPTION_B_PARAMETERS))
def test_option_b_parameters(name: str) -> None:
    assert count_parameters(on_meta(name, shortcut="B")) == OPTION_B_PARAMETERS[name]


def test_option_c_projects_every_shortcut() -> None:
    model = on_meta("resnet20", shortcut="C")
    blocks = [module for module in model.modules() if isinstance(module, BasicBlock)]
    assert len(blocks) == 9 and all(isinstance(b.downsample, ProjectionShortcut) for b in blocks)
    # By hand, 1x1 conv + BN per block: 3 x (16*16 + 32) + (16*32 + 64) + 2 x (32*32 + 64)
    # + (32*64 + 128) + 2 x (64*64 + 128) = 14,240 parameters over option A's 269,722.
    assert count_parameters(model) == 269_722 + 14_240


def test_option_a_shortcut_is_parameter_free_and_zero_pads() -> None:
    for name, expected in (("resnet20", 2), ("resnet34", 3), ("resnet50", 4)):
        model = on_meta(name, shortcut="A")
        shortcuts = [module for module in model.modules() if isinstance(module, ShortcutA)]
        assert len(shortcuts) == expected, name
        assert all(not list(shortcut.parameters()) for shortcut in shortcuts)
        assert not any(isinstance(module, ProjectionShortcut) for module in model.modules())
    x = torch.randn(2, 16, 8, 8)
    out = ShortcutA(16, 32, stride=2)(x)
    assert out.shape == (2, 32, 4, 4)
    assert torch.equal(out[:, :16], x[:, :, ::2, ::2])
    assert torch.count_nonzero(out[:, 16:]) == 0
    # akamaster's CIFAR code splits the zeros before and after (option_a_padding="both")
    split = ShortcutA(16, 32, stride=2, padding="both")(x)
    assert torch.equal(split[:, 8:24], x[:, :, ::2, ::2])
    assert torch.count_nonzero(split[:, :8]) == torch.count_nonzero(split[:, 24:]) == 0


def test_plain_nets_have_no_shortcut() -> None:
    model = on_meta("plain20")
    blocks = [module for module in model.modules() if isinstance(module, BasicBlock)]
    assert len(blocks) == 9
    assert all(block.downsample is None and not block.residual for block in blocks)


# ---------------------------------------------------------------- torchvision (option B, v1.5)


@pytest.mark.parametrize("depth", sorted(TORCHVISION_PARAMETERS))
def test_option_b_v15_has_torchvisions_parameter_count(depth: int) -> None:
    options = {"shortcut": "B"} | ({"bottleneck_stride": "3x3"} if depth >= 50 else {})
    with torch.device("meta"):
        reference = getattr(torchvision.models, f"resnet{depth}")(weights=None)
    ours = count_parameters(on_meta(f"resnet{depth}", **options))
    assert ours == count_parameters(reference) == TORCHVISION_PARAMETERS[depth]


def _randomise_batch_norm(model: nn.Module, seed: int) -> None:
    # Fresh BN layers are identities in eval mode; give them real statistics so the comparison
    # exercises them.
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            channels = module.num_features
            module.weight.data = torch.rand(channels, generator=generator) + 0.5
            module.bias.data = torch.randn(channels, generator=generator) * 0.1
            module.running_mean = torch.randn(channels, generator=generator) * 0.1
            module.running_var = torch.rand(channels, generator=generator) + 0.5


@pytest.mark.parametrize("depth", sorted(TORCHVISION_PARAMETERS))
def test_option_b_v15_loads_torchvision_state_dict_and_matches_outputs(depth: int) -> None:
    torch.manual_seed(depth)
    reference = getattr(torchvision.models, f"resnet{depth}")(weights=None).eval()
    _randomise_batch_norm(reference, seed=depth)
    options = {"shortcut": "B"} | ({"bottleneck_stride": "3x3"} if depth >= 50 else {})
    model = build_model(f"resnet{depth}", **options).eval()
    model.load_state_dict(reference.state_dict(), strict=True)
    assert list(model.state_dict()) == list(reference.state_dict())
    x = sample_input(f"resnet{depth}")
    with torch.no_grad():
        expected = reference(x)
        assert torch.allclose(model(x), expected, rtol=1e-4, atol=1e-5)
        if depth >= 50:
            # The paper's stride placement is a different function of the same weights.
            v1 = build_model(f"resnet{depth}", shortcut="B", bottleneck_stride="1x1").eval()
            v1.load_state_dict(reference.state_dict(), strict=True)
            assert not torch.allclose(v1(x), expected, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- multiply-adds (Table 1)


@pytest.mark.parametrize("name", sorted(TABLE_1_MULTIPLY_ADDS))
def test_multiply_adds_match_table_1(name: str) -> None:
    multiply_adds = count_multiply_adds(on_meta(name), (3, 224, 224))
    assert multiply_adds / 1e9 == pytest.approx(TABLE_1_MULTIPLY_ADDS[name], rel=0.03)


def test_v15_multiply_adds_match_torchvision() -> None:
    # torchvision's ResNet50_Weights metadata: 4.09 GFLOPs; the stride moves to the 3x3 conv,
    # which then runs at 4x the spatial size in the first block of stages 3-5.
    multiply_adds = count_multiply_adds(on_meta("resnet50", bottleneck_stride="3x3"), (3, 224, 224))
    assert round(multiply_adds / 1e9, 2) == 4.09


def test_cifar_multiply_adds() -> None:
    # Derived in the reference file: ResNet-20 40.6M, ResNet-56 125.5M per 32x32 image.
    real = count_multiply_adds(build_model("resnet20"), (3, 32, 32))
    assert real == count_multiply_adds(on_meta("resnet20"), (3, 32, 32)) == 40_551_040
    assert round(real / 1e6, 1) == 40.6
    assert round(count_multiply_adds(on_meta("resnet56"), (3, 32, 32)) / 1e6, 1) == 125.5
    assert count_multiply_adds(on_meta("plain56"), (3, 32, 32)) == count_multiply_adds(on_meta("resnet56"), (3, 32, 32))


def test_counting_restores_training_mode() -> None:
    model = build_model("resnet20").train()
    count_multiply_adds(model, (3, 32, 32))
    assert model.training
    assert all(not module._forward_hooks for module in model.modules())


# ---------------------------------------------------------------- every registered model


def test_registry_names() -> None:
    assert list_models() == [
        "plain20", "plain32", "plain44", "plain56", "plain110",
        "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet1202",
        # the paper's relatives (benchmark/models/highway.py ... densenet.py)
        "highway_resnet20", "highway_resnet32", "highway_resnet44", "highway_resnet56", "highway_resnet110",
        "highway19", "highway32", "preact_resnet164", "preact_resnet1001",
        "wrn16_4", "wrn16_8", "wrn28_10", "wrn40_4", "resnext29_8x64d", "resnext29_16x64d",
        "densenet_bc100_12", "densenet_bc190_40", "densenet_bc250_24",
        "plain18", "plain34", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "name", [pytest.param(name, marks=pytest.mark.slow) if name in SLOW else name for name in list_models()]
)
def test_forward_and_backward_without_nan(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name).train()
    x = sample_input(name)
    labels = torch.tensor([0, 1])
    logits = model(x)
    assert logits.shape == (2, model_info(name).num_classes)
    assert torch.isfinite(logits).all()
    loss = nn.functional.cross_entropy(logits, labels)
    loss.backward()
    assert torch.isfinite(loss)
    for parameter_name, parameter in model.named_parameters():
        assert parameter.grad is not None, parameter_name
        assert torch.isfinite(parameter.grad).all(), parameter_name


def test_resnet1202_forward() -> None:
    # The fast stand-in for the slow forward+backward test above: 1202 layers, 2.8G mult-adds.
    # Train mode: at init BN's running statistics are (0, 1), so in eval mode each of the 600
    # blocks adds its branch's variance to the identity's and the output overflows to NaN; batch
    # statistics (as in training, Section 4.2) keep it finite.
    model = build_model("resnet1202").train()
    with torch.no_grad():
        logits = model(sample_input("resnet1202"))
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()


# One net per mix of module classes (whether a model pickles depends on its classes, not its depth):
# plain, option A (CIFAR), option B projections with bottlenecks (ImageNet), pre-activation.
@pytest.mark.parametrize(("name", "options"), [
    ("plain20", {}), ("resnet20", {}), ("resnet50", {}), ("resnet18", {"preact": True, "shortcut": "C"})])
def test_pickles_and_gives_the_same_output(name: str, options: dict[str, object]) -> None:
    # Ray ships models between processes with pickle: no lambdas, no unpicklable state.
    torch.manual_seed(0)
    model = build_model(name, **options).train()
    x = sample_input(name)
    with torch.no_grad():
        before = model(x)
        copy = pickle.loads(pickle.dumps(model))
        state, copied = model.state_dict(), copy.state_dict()
        assert list(state) == list(copied) and all(torch.equal(state[key], copied[key]) for key in state)
        after = copy(x)
    assert torch.isfinite(before).all() and torch.equal(before, after)


# ---------------------------------------------------------------- options and metadata


def test_model_info() -> None:
    info = model_info("resnet50")
    assert (info.family, info.kind, info.depth, info.default_shortcut, info.block) == (
        "imagenet", "residual", 50, "B", "bottleneck",
    )  # fmt: skip
    assert (info.input_size, info.num_classes) == ((3, 224, 224), 1000)
    assert info.options == ("shortcut", "option_a_padding", "preact", "num_classes", "bottleneck_stride")
    assert model_info("resnet34").default_shortcut == "A"  # Table 2: option A for 18/34
    plain = model_info("plain56")
    assert (plain.family, plain.kind, plain.depth, plain.default_shortcut) == ("cifar", "plain", 56, None)
    assert (plain.input_size, plain.num_classes, plain.options) == ((3, 32, 32), 10, ("preact", "num_classes"))


def test_default_shortcuts_are_the_papers() -> None:
    resnet18 = on_meta("resnet18")
    assert count_parameters(resnet18) == count_parameters(on_meta("plain18"))  # option A
    resnet50 = on_meta("resnet50")
    assert isinstance(resnet50.layer1[0].downsample, ProjectionShortcut)  # option B
    assert resnet50.layer1[1].downsample is None


def test_he_initialisation() -> None:
    torch.manual_seed(0)
    model = build_model("resnet56")
    conv = model.layer3[1].conv1  # 64 -> 64, 3x3: fan_out = 64 * 9
    assert conv.weight.std().item() == pytest.approx((2 / (64 * 9)) ** 0.5, rel=0.05)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert torch.all(module.weight == 1) and torch.all(module.bias == 0)


def test_options_are_plumbed() -> None:
    assert on_meta("resnet20", num_classes=100).fc.out_features == 100
    assert on_meta("resnet50", num_classes=7).fc.out_features == 7
    preact = on_meta("resnet20", preact=True)
    assert all(isinstance(block, PreActBasicBlock) for block in preact.layer2)
    assert preact.bn_final is not None and preact.bn1 is None
    assert all(isinstance(block, PreActBottleneck) for block in on_meta("resnet50", preact=True).layer4)
    strided = on_meta("resnet50", bottleneck_stride="1x1").layer2[0]
    assert (strided.conv1.stride, strided.conv2.stride) == ((2, 2), (1, 1))
    strided = on_meta("resnet50", bottleneck_stride="3x3").layer2[0]
    assert (strided.conv1.stride, strided.conv2.stride) == ((1, 1), (2, 2))
    # None means "the default", so a trial can pass every axis to every model.
    assert count_parameters(on_meta("plain20", shortcut=None)) == 269_722


@pytest.mark.parametrize("preact", [False, True])
def test_plain_and_preact_nets_train(preact: bool) -> None:
    torch.manual_seed(0)
    for model in (cifar_resnet(1, residual=False, preact=preact), cifar_resnet(1, residual=True, preact=preact)):
        loss = model(sample_input("resnet20")).logsumexp(1).mean()
        loss.backward()
        assert torch.isfinite(loss)


def test_any_6n_plus_2_depth() -> None:
    assert cifar_n(20) == 3 and cifar_n(1202) == 200 and cifar_n(8) == 1
    # Derived by hand: conv1 + BN 464, stage 1 4,672, stage 2 13,952, stage 3 55,552, fc 650.
    assert count_parameters(cifar_resnet(cifar_n(8), residual=True)) == 75_290


@pytest.mark.parametrize(
    ("build", "args", "kwargs", "message"),
    [
        (build_model, ("resnet21",), {}, "unknown model 'resnet21'; did you mean "),
        (build_model, ("resnet50",), {"shortcut": "D"}, "unknown shortcut 'D' for resnet50; expected 'A'"),
        (build_model, ("plain20",), {"shortcut": "A"}, "plain nets have no shortcut"),
        (build_model, ("plain34",), {"shortcut": "B"}, "plain nets have no shortcut"),
        (build_model, ("resnet20",), {"bottleneck_stride": "3x3"}, "resnet20 has no bottleneck blocks, so bottleneck_stride='3x3' does not apply"),
        (build_model, ("resnet34",), {"bottleneck_stride": "3x3"}, "resnet34 has no bottleneck blocks"),
        (build_model, ("resnet50",), {"bottleneck_stride": "2x2"}, "unknown bottleneck_stride '2x2' for resnet50; expected '1x1'"),
        (build_model, ("resnet20",), {"widen": 2}, "unknown option widen=2 for resnet20; resnet20 takes: shortcut, option_a_padding, preact, num_classes"),
        (build_model, ("resnet20",), {"num_classes": 0}, "num_classes must be a positive integer for resnet20, got 0"),
        (build_model, ("resnet20",), {"preact": "yes"}, "preact must be true or false for resnet20, got 'yes'"),
        (cifar_n, (21,), {}, "CIFAR depth 21 is not 6n+2: depth must be 6n+2 (20, 32, 44, 56, 110, 1202, ...)"),
        (cifar_resnet, (0,), {"residual": True}, "n must be a positive integer"),
    ],
)  # fmt: skip
def test_bad_names_and_options_raise_model_error(build, args: tuple, kwargs: dict, message: str) -> None:
    with pytest.raises(ModelError) as raised:
        build(*args, **kwargs)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_unknown_name_suggests_close_matches() -> None:
    with pytest.raises(ModelError, match="did you mean .*resnet20") as raised:
        build_model("resnet21")
    assert "plain110" not in str(raised.value)


def test_unknown_name_without_close_match_lists_models() -> None:
    with pytest.raises(ModelError, match="known models: plain20, plain32"):
        build_model("vgg16")


def test_duplicate_registration_raises() -> None:
    with pytest.raises(ModelError, match="'resnet20' is already registered"):
        register_model(model_info("resnet20"))(build_model)
    assert list_models().count("resnet20") == 1
