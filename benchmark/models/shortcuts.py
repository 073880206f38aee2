"""The shortcut connections of Section 3.3, options A, B and C, as real (picklable) modules.

A block holds its shortcut as ``downsample`` (torchvision's attribute name, so option-B ImageNet
state dicts load into ours); ``None`` there means the identity shortcut of Eqn. (1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Where option A's zero channels go (ShortcutA): after the identity's channels (this project, as
# fb.resnet.torch), or split before and after (akamaster/pytorch_resnet_cifar10 and its copies).
OPTION_A_PADDINGS = ("after", "both")


class ShortcutA(nn.Module):
    """Option A: identity with extra zero entries padded for increasing dimensions (Section 3.3).

    Parameter-free (Section 4.2: "so our residual models have exactly the same depth, width, and
    number of parameters as the plain counterparts"). Where the feature map halves, the identity is
    subsampled with stride 2 (x[:, :, ::2, ::2]): "when the shortcuts go across feature maps of
    two sizes, they are performed with a stride of 2". The new channels are zeros appended after
    the old ones, as in the authors' collaborators' fb.resnet.torch (akamaster's CIFAR code pads
    on both sides instead; the two are equivalent up to a permutation of the next layer's filters).

    ``padding`` says where the zeros go: "after" the identity's channels (ours), or "both": half
    before and half after, as akamaster's code and the CIFAR reproductions that copy it do. The
    paper does not say, and the weights cannot tell: a net scored with the other side than it was
    trained with gets a visibly wrong error, so evaluating another project's weights must match it.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, padding: str = "after") -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"option A only pads: {in_channels} -> {out_channels} channels")
        if padding not in OPTION_A_PADDINGS:
            raise ValueError(f"unknown option A padding {padding!r}; expected one of {OPTION_A_PADDINGS}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        extra = self.out_channels - self.in_channels
        before = extra // 2 if self.padding == "both" else 0
        # F.pad's pairs run from the last dimension back: (W, W, H, H, C before, C after).
        return F.pad(x, (0, 0, 0, 0, before, extra - before))

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}, padding={self.padding}"


class ProjectionShortcut(nn.Sequential):
    """Options B and C: W_s x of Eqn. (2), a 1x1 conv (stride 1 or 2) followed by BN.

    An ``nn.Sequential(conv, bn)`` so its state-dict keys (``downsample.0.weight``,
    ``downsample.1.running_mean``, ...) are torchvision's.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
            nn.BatchNorm2d(out_channels),
        )


def make_shortcut(option: str | None, in_channels: int, out_channels: int, stride: int,
                  padding: str = "after") -> nn.Module | None:
    """The shortcut of one block; None for the identity (and for plain nets, option None).
    ``padding``: where option A puts its zero channels (``ShortcutA``)."""
    changes = stride != 1 or in_channels != out_channels
    if option is None or (option in ("A", "B") and not changes):
        return None
    if option == "A":
        return ShortcutA(in_channels, out_channels, stride, padding)
    if option in ("B", "C"):
        return ProjectionShortcut(in_channels, out_channels, stride)
    raise ValueError(f"unknown shortcut option {option!r}")
