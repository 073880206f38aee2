"""The paper's networks: a name-keyed registry of the CIFAR-10 nets (Section 4.2, Table 6) and
the ImageNet nets (Table 1), plain and residual, with shortcut options A/B/C (Section 3.3),
optional pre-activation blocks (He et al. 2016), and their complexity (parameters, mult-adds).

Beside them, the paper's relatives on CIFAR-10: highway nets and highway-gated ResNets (``highway``),
the pre-activation bottleneck ResNet-164/1001 (``preact_bottleneck``), Wide ResNets (``wide``),
ResNeXt-29 (``resnext``) and DenseNet-BC (``densenet``).

    >>> from benchmark.models import build_model, model_info
    >>> model = build_model("resnet56")               # option A, as in Table 6
    >>> model = build_model("resnet50", bottleneck_stride="3x3")   # torchvision's v1.5
    >>> model = build_model("wrn28_10", dropout=0.3)  # WRN Table 6
"""

# Importing a family module registers its names.
from benchmark.models import cifar, densenet, highway, imagenet, preact_bottleneck, resnext, wide  # noqa: F401
from benchmark.models.blocks import BasicBlock, Bottleneck, PreActBasicBlock, PreActBottleneck
from benchmark.models.cifar import cifar_n, cifar_resnet
from benchmark.models.complexity import count_multiply_adds, count_parameters, named_complexity
from benchmark.models.imagenet import imagenet_resnet
from benchmark.models.network import ResNet
from benchmark.models.registry import ModelInfo, build_model, list_models, model_info, register_model
from benchmark.models.shortcuts import ProjectionShortcut, ShortcutA

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "ModelInfo",
    "PreActBasicBlock",
    "PreActBottleneck",
    "ProjectionShortcut",
    "ResNet",
    "ShortcutA",
    "build_model",
    "cifar_n",
    "cifar_resnet",
    "count_multiply_adds",
    "count_parameters",
    "imagenet_resnet",
    "list_models",
    "model_info",
    "named_complexity",
    "register_model",
]
