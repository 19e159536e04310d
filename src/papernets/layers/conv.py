"""Convolution + normalization + activation, the unit most convnet papers draw as one box."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None, round_limit: float = 0.9) -> int:
    """Round a channel count to a multiple of ``divisor`` without dropping below ``round_limit`` of it.

    The rule of the MobileNetV2 / EfficientNet reference code (their ``_make_divisible``).
    """
    min_value = min_value or divisor
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < round_limit * value:
        new += divisor
    return new


class ConvNormAct(nn.Sequential):
    """``Conv2d`` (no bias when normalized) -> norm -> activation, with "same" padding by default.

    ``norm_layer=None`` gives a biased convolution without normalization; ``act_layer=None`` no activation.
    The submodules are named ``conv``, ``bn`` and ``act`` so that state dicts read naturally.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int | tuple[int, int] = 3,
        stride: int = 1,
        padding: int | tuple[int, int] | None = None,
        groups: int = 1,
        dilation: int = 1,
        bias: bool | None = None,
        norm_layer: Callable[[int], nn.Module] | None = nn.BatchNorm2d,
        act_layer: Callable[..., nn.Module] | None = nn.ReLU,
        inplace: bool = True,
    ) -> None:
        if padding is None:
            if isinstance(kernel_size, tuple):
                padding = tuple(dilation * (k - 1) // 2 for k in kernel_size)
            else:
                padding = dilation * (kernel_size - 1) // 2
        if bias is None:
            bias = norm_layer is None
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding, dilation, groups, bias=bias)
        if norm_layer is not None:
            self.bn = norm_layer(out_chs)
        if act_layer is not None:
            try:
                self.act = act_layer(inplace=inplace)
            except TypeError:
                self.act = act_layer()
        self.in_chs, self.out_chs = in_chs, out_chs
