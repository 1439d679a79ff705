"""Pieces every model shares: parameter groups, new-layer init, BatchNorm freezing, configs.

The models live in their own modules (`backbone`, `classifier`, `deeplab`, `affinity`); this
package file holds only what they have in common, so importing one model never imports the
others. `registry` maps a checkpoint kind to its model class.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

from torch import nn

from wsss.errors import WsssError

ParamGroup = dict[str, Any]


def split_param_groups(
    pretrained: Sequence[nn.Module], new: Sequence[nn.Module]
) -> list[ParamGroup]:
    """The paper's learning-rate multipliers: pretrained x1, new layers x10, each bias-like x2.

    "Bias-like" is any 1-d parameter (conv/linear biases and normalisation scales and
    shifts): lr doubled and no weight decay, since decaying a BN scale towards 0 only fights
    the normalisation. The reference sorted by the substring "weight", which put BN scales
    with the decayed weights; we follow the paper's wording instead. Frozen parameters
    (requires_grad False) are left out. Each group carries `lr_mult` and
    `weight_decay_mult` for the optimiser builder; empty groups are dropped.
    """
    seen: set[int] = set()
    groups: list[ParamGroup] = []
    for role, modules, lr_mult in (("pretrained", pretrained, 1.0), ("new", new, 10.0)):
        weights, biases = [], []
        for module in modules:
            for param in module.parameters():
                if not param.requires_grad:
                    continue
                if id(param) in seen:
                    raise ValueError(f"parameter of shape {tuple(param.shape)} listed twice")
                seen.add(id(param))
                (biases if param.ndim <= 1 else weights).append(param)
        groups.append(_group(f"{role}_weights", weights, lr_mult, 1.0))
        groups.append(_group(f"{role}_biases", biases, 2 * lr_mult, 0.0))
    return [group for group in groups if group["params"]]


def _group(name: str, params: list, lr_mult: float, weight_decay_mult: float) -> ParamGroup:
    return {
        "params": params,
        "lr_mult": lr_mult,
        "weight_decay_mult": weight_decay_mult,
        "name": name,
    }


def init_new_layers(modules: Iterable[nn.Module]) -> None:
    """He-normal convs and zero biases for layers trained from scratch, as the reference did."""
    for module in modules:
        for layer in module.modules():
            if isinstance(layer, nn.Conv2d):
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)
            elif isinstance(layer, nn.modules.batchnorm._BatchNorm) and layer.affine:
                nn.init.ones_(layer.weight)
                nn.init.zeros_(layer.bias)


def batchnorm_layers(module: nn.Module) -> Iterator[nn.modules.batchnorm._BatchNorm]:
    """All BatchNorm variants (also SyncBatchNorm and timm's BatchNormAct2d subclasses)."""
    return (m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))


def freeze_batchnorm(module: nn.Module) -> None:
    """Stop BN parameters from learning; call `hold_batchnorm_eval` after every `train()`."""
    for layer in batchnorm_layers(module):
        for param in layer.parameters():
            param.requires_grad_(False)
    hold_batchnorm_eval(module)


def hold_batchnorm_eval(module: nn.Module) -> None:
    """Keep running statistics fixed: small or tiled batches would otherwise corrupt them."""
    for layer in batchnorm_layers(module):
        layer.eval()


def config_kwargs(model: str, config: Mapping[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    """The constructor arguments stored in a checkpoint, with a one-line error if they drifted."""
    missing = [key for key in keys if key not in config]
    unknown = [key for key in config if key not in keys]
    if missing or unknown:
        problems = [f"missing {', '.join(missing)}"] if missing else []
        problems += [f"unknown {', '.join(unknown)}"] if unknown else []
        raise WsssError(f"{model} model config: {'; '.join(problems)}")
    return {key: config[key] for key in keys}


class CheckpointModel(nn.Module):
    """A model saved in checkpoints: it knows its checkpoint `KIND`, and its config is the
    constructor arguments it was built with (captured, less `pretrained`: weights come from the
    checkpoint), so `from_config(model.config())` rebuilds the architecture."""

    KIND: ClassVar[str]
    NAME: ClassVar[str]  # for error messages
    NOT_CONFIG: ClassVar[tuple[str, ...]] = ("pretrained",)
    # Constructor arguments added after checkpoints were first written: a stored config
    # without one was made with the argument's default.
    ADDED_KEYS: ClassVar[tuple[str, ...]] = ()
    _config: dict[str, Any]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return
        signature = inspect.signature(init)

        @functools.wraps(init)
        def captured_init(self: CheckpointModel, *args: Any, **kw: Any) -> None:
            init(self, *args, **kw)
            if type(self) is cls:
                bound = signature.bind(self, *args, **kw)
                bound.apply_defaults()
                names = list(bound.arguments)[1:]
                self._config = {
                    name: _plain(bound.arguments[name])
                    for name in names
                    if name not in cls.NOT_CONFIG
                }

        cls.__init__ = captured_init  # type: ignore[method-assign]

    backbone: nn.Module
    # True: the backbone's BatchNorm stays in eval mode whatever the model's mode.
    holds_backbone_batchnorm = False

    def new_modules(self) -> list[nn.Module]:
        """The layers trained from scratch (higher learning rate than the backbone)."""
        raise NotImplementedError

    def param_groups(self) -> list[ParamGroup]:
        return split_param_groups([self.backbone], self.new_modules())

    def train(self, mode: bool = True) -> CheckpointModel:
        super().train(mode)
        if self.holds_backbone_batchnorm:
            hold_batchnorm_eval(self.backbone)
        return self

    @classmethod
    def config_keys(cls) -> tuple[str, ...]:
        names = list(inspect.signature(cls.__init__).parameters)[1:]
        return tuple(name for name in names if name not in cls.NOT_CONFIG)

    def config(self) -> dict[str, Any]:
        return dict(self._config)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> CheckpointModel:
        """Rebuild the architecture for loading a checkpoint (weights come from the checkpoint)."""
        parameters = inspect.signature(cls.__init__).parameters
        config = {**{key: parameters[key].default for key in cls.ADDED_KEYS}, **config}
        return cls(**config_kwargs(cls.NAME, config, cls.config_keys()), pretrained="none")


def _plain(value: Any) -> Any:
    """Tuples stored as lists, as checkpoints have always held them."""
    return [_plain(v) for v in value] if isinstance(value, tuple | list) else value
