"""The typed training configuration: one dataclass per section, each field carrying its
default and its rule. `Config.from_dict(d)` checks every key (unknown keys get a "did you
mean" naming the closest key in any section), every value (types, ranges, choices) and the
rules between fields, and returns the typed, normalised config; `Config.to_dict()` gives the
plain nested dict that runs, checkpoints and config.yaml store."""
from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from ..errors import UserError

__all__ = ["ConfigError", "Config", "check_keys", "suggest_key"]


class ConfigError(UserError):
    """A bad configuration value or key."""


# ----------------------------------------------------------------------------- field rules

@dataclass(frozen=True)
class Number:
    ge: Optional[float] = None
    gt: Optional[float] = None
    le: Optional[float] = None
    lt: Optional[float] = None
    integer: bool = False
    nullable: bool = False

    def __call__(self, name: str, value: Any) -> Any:
        if value is None:
            if self.nullable:
                return None
            raise ConfigError(f"{name} must be set")
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{name} must be a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name} must be a number, got {value!r}")
        if self.integer and not float(value).is_integer():
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        if not math.isfinite(float(value)):
            raise ConfigError(f"{name} must be finite, got {value!r}")
        for bound, op, ok in ((self.ge, ">=", lambda v, b: v >= b), (self.gt, ">", lambda v, b: v > b),
                              (self.le, "<=", lambda v, b: v <= b), (self.lt, "<", lambda v, b: v < b)):
            if bound is not None and not ok(value, bound):
                raise ConfigError(f"{name} must be {op} {bound}, got {value!r}")
        return int(value) if self.integer else value


@dataclass(frozen=True)
class Choice:
    choices: Union[Tuple[str, ...], Callable[[], Sequence[str]]]

    def __call__(self, name: str, value: Any) -> Any:
        choices = self.choices() if callable(self.choices) else self.choices
        if isinstance(value, str):
            value = value.lower()
        if value not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
        return value


@dataclass(frozen=True)
class Must:
    """A rule that a value passes as it is: `test(value)` must hold."""

    test: Callable[[Any], bool]
    expected: str

    def __call__(self, name: str, value: Any) -> Any:
        if not self.test(value):
            raise ConfigError(f"{name} must be {self.expected}, got {value!r}")
        return value


def _any(name: str, value: Any) -> Any:
    return value


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


_flag = Must(lambda v: isinstance(v, bool), "true or false")
_model_name = Must(lambda v: isinstance(v, str) and bool(v), "a model name string")
_mapping = Must(lambda v: isinstance(v, dict), "a mapping")
_channel_values = Must(lambda v: v is None or (isinstance(v, (list, tuple)) and all(_is_number(x) for x in v)),
                       "a list of numbers (one per channel)")
_scale = Must(lambda v: isinstance(v, (list, tuple)) and len(v) == 2 and all(_is_number(x) for x in v)
              and 0 < v[0] <= v[1] <= 1, "[min, max] with 0 < min <= max <= 1")
_betas = Must(lambda v: isinstance(v, (list, tuple)) and len(v) == 2 and all(_is_number(x) and 0 <= x < 1 for x in v),
              "two numbers in [0, 1)")
_AUTO_AUGMENT_POLICIES = ("rand", "augmix", "original", "originalr", "v0", "v0r", "3a")
_auto_augment = Must(lambda v: v is None or (isinstance(v, str) and v.split("-")[0] in _AUTO_AUGMENT_POLICIES),
                     "a timm policy string such as 'rand-m9-mstd0.5-inc1'")
_device = Must(lambda v: isinstance(v, str) and (v in ("auto", "cpu", "cuda") or v.startswith("cuda:")),
               "auto, cpu, cuda or cuda:N")


def _directions(name: str, value: Any) -> Any:
    if value is not None and not isinstance(value, (str, list)):
        raise ConfigError(f"{name} must be a directions file path or a list of per-layer lists")
    if isinstance(value, list):
        from ..ops import parse_directions

        for i, layer in enumerate(value):
            if not isinstance(layer, (list, tuple, str)):
                raise ConfigError(f"{name}[{i}] must be a list of direction names, got {layer!r}")
            try:
                parse_directions(layer)
            except (ValueError, TypeError) as e:
                raise ConfigError(f"{name}[{i}]: {e}") from None
    return value


def _dataset_names() -> List[str]:
    from ..data.registry import dataset_names

    return dataset_names()


def setting(default: Any, rule: Callable[[str, Any], Any] = _any, doc: str = "") -> Any:
    """A config field: its default, the rule that checks (and normalises) a value, a note."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"rule": rule, "doc": doc})
    return field(default=default, metadata={"rule": rule, "doc": doc})


# ----------------------------------------------------------------------------- sections

@dataclass
class ModelConfig:
    name: str = setting("local_vim_tiny", _model_name, "registered model name, or package.module:callable")
    kwargs: dict = setting({}, _mapping, "extra constructor arguments (embed_dim, depth, patch_size, ...)")
    drop_path: float = setting(0.1, Number(ge=0.0, le=1.0))
    directions: Any = setting(None, _directions, "per-layer direction lists, or a directions file; None: the model's")
    pretrained: Optional[str] = setting(None, doc="checkpoint whose weights initialise the model (not a resume)")


@dataclass
class DataConfig:
    dataset: str = setting("digits", Choice(_dataset_names), "a registered dataset (localmamba.data.dataset_names())")
    root: Optional[str] = setting(None)
    train_split: str = setting("train")
    val_split: str = setting("val")
    img_size: int = setting(224, Number(ge=1, integer=True))
    in_chans: Optional[int] = setting(None, Number(ge=1, integer=True, nullable=True), "None: from the dataset")
    num_classes: Optional[int] = setting(None, Number(ge=1, integer=True, nullable=True), "None: from the dataset")
    mean: Optional[list] = setting(None, _channel_values, "None: the dataset's")
    std: Optional[list] = setting(None, _channel_values)
    interpolation: str = setting("bicubic", Choice(("bilinear", "bicubic", "nearest")))
    crop_pct: float = setting(0.875, Number(gt=0.0, le=1.0))
    workers: int = setting(4, Number(ge=0, integer=True))
    pin_memory: bool = setting(True, _flag)
    val_fraction: float = setting(0.2, Number(gt=0.0, le=1.0), "held-out fraction without a validation split")
    limit_train: Optional[int] = setting(None, Number(ge=1, integer=True, nullable=True), "first N training samples")
    limit_val: Optional[int] = setting(None, Number(ge=1, integer=True, nullable=True))

    def check(self) -> None:
        from ..data.registry import get_dataset

        if get_dataset(self.dataset).needs_root and not self.root:
            raise ConfigError(f"data.root must be set for dataset {self.dataset!r} (use --data-dir)")
        if self.std is not None and any(x <= 0 for x in self.std):
            raise ConfigError(f"data.std must be positive, got {self.std!r}")


@dataclass
class AugConfig:
    scale: list = setting([0.08, 1.0], _scale, "RandomResizedCrop scale (imagefolder)")
    hflip: float = setting(0.5, Number(ge=0.0, le=1.0))
    random_crop_padding: Optional[int] = setting(None, Number(ge=0, integer=True, nullable=True), "None: img_size // 8")
    auto_augment: Optional[str] = setting(None, _auto_augment, "e.g. rand-m9-mstd0.5-inc1 (timm RandAugment)")
    color_jitter: float = setting(0.0, Number(ge=0.0))
    reprob: float = setting(0.0, Number(ge=0.0, le=1.0), "random erasing probability")
    remode: str = setting("pixel", Choice(("pixel", "rand", "const")))
    recount: int = setting(1, Number(ge=1, integer=True))
    mixup: float = setting(0.0, Number(ge=0.0))
    cutmix: float = setting(0.0, Number(ge=0.0))
    mixup_prob: float = setting(1.0, Number(ge=0.0, le=1.0))
    mixup_switch_prob: float = setting(0.5, Number(ge=0.0, le=1.0))
    mixup_mode: str = setting("batch", Choice(("batch", "pair", "elem")))
    smoothing: float = setting(0.1, Number(ge=0.0, lt=1.0))


@dataclass
class OptimConfig:
    opt: str = setting("adamw", Choice(("adamw",)))
    lr: float = setting(1e-3, Number(gt=0.0))
    lr_base_batch: Optional[int] = setting(None, Number(ge=1, integer=True, nullable=True),
                                       "if set, lr scales linearly: lr * global_batch / lr_base_batch")
    weight_decay: float = setting(0.05, Number(ge=0.0))
    betas: list = setting([0.9, 0.999], _betas)
    eps: float = setting(1e-8, Number(gt=0.0))
    clip_grad: Optional[float] = setting(None, Number(gt=0.0, nullable=True), "max global gradient norm")
    alpha_lr: Optional[float] = setting(None, Number(gt=0.0, nullable=True), "search: lr of the direction logits")
    alpha_weight_decay: float = setting(0.0, Number(ge=0.0))


@dataclass
class SchedConfig:
    epochs: int = setting(300, Number(ge=1, integer=True))
    warmup_epochs: float = setting(20, Number(ge=0))
    warmup_lr: float = setting(1e-7, Number(ge=0.0))
    min_lr: float = setting(1e-6, Number(ge=0.0))

    def check(self) -> None:
        if self.warmup_epochs > self.epochs:
            raise ConfigError(f"sched.warmup_epochs ({self.warmup_epochs}) must not exceed sched.epochs ({self.epochs})")


@dataclass
class TrainConfig:
    batch_size: int = setting(128, Number(ge=1, integer=True), "per process")
    eval_batch_size: Optional[int] = setting(None, Number(ge=1, integer=True, nullable=True), "None: 2 x batch_size")
    seed: int = setting(42, Number(ge=0, integer=True))
    device: str = setting("auto", _device, "auto | cpu | cuda | cuda:N")
    amp: str = setting("none", Choice(("none", "bf16", "fp16")))
    ema: bool = setting(False, _flag)
    ema_decay: float = setting(0.9998, Number(ge=0.0, le=1.0))
    eval_every: int = setting(1, Number(ge=1, integer=True), "epochs")
    checkpoint_every_steps: int = setting(0, Number(ge=0, integer=True), "0: only at epoch ends")
    stop_after_steps: Optional[int] = setting(None, Number(ge=1, integer=True, nullable=True),
                                          "stop cleanly (with a checkpoint) after this global step")
    threads: Optional[int] = setting(None, Number(ge=1, integer=True, nullable=True), "torch.set_num_threads")


@dataclass
class SearchConfig:
    top_k: int = setting(4, Number(ge=1, integer=True), "directions kept per layer by export")


@dataclass
class OutputConfig:
    dir: Optional[str] = setting(None, doc="None: runs/<command>-<model>-<dataset>-<YYYYmmdd-HHMMSS>")
    plots: bool = setting(True, _flag)
    safetensors: bool = setting(True, _flag)


@dataclass
class LogConfig:
    interval: int = setting(10, Number(ge=1, integer=True), "steps between train-step records in metrics.jsonl")
    progress: bool = setting(True, _flag, "tqdm progress bars (rank 0)")


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    aug: AugConfig = field(default_factory=AugConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sched: SchedConfig = field(default_factory=SchedConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    log: LogConfig = field(default_factory=LogConfig)

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any]) -> "Config":
        """Checks keys, values and cross-field rules; raises ConfigError naming the key."""
        check_keys(cfg)
        sections = {}
        for sec in dataclasses.fields(cls):
            values = dict(cfg.get(sec.name, {}))
            for f in dataclasses.fields(sec.default_factory):
                if f.name in values:
                    values[f.name] = f.metadata["rule"](f"{sec.name}.{f.name}", values[f.name])
            sections[sec.name] = sec.default_factory(**values)
        typed = cls(**sections)
        typed.check()
        return typed

    def check(self) -> None:
        for sec in dataclasses.fields(self):
            section = getattr(self, sec.name)
            if hasattr(section, "check"):
                section.check()
        if self.sched.min_lr > self.optim.lr:
            raise ConfigError(f"sched.min_lr ({self.sched.min_lr}) must not exceed optim.lr ({self.optim.lr})")

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------- keys

def _schema() -> Dict[str, List[str]]:
    return {sec.name: [f.name for f in dataclasses.fields(sec.default_factory)] for sec in dataclasses.fields(Config)}


def suggest_key(dotted: str) -> Optional[str]:
    """The closest valid key to an unknown one: the same key name in another section
    (`train.epochs` -> `sched.epochs`), else the nearest spelling."""
    schema = _schema()
    all_keys = [f"{s}.{k}" for s, keys in schema.items() for k in keys]
    parts = dotted.split(".")
    if len(parts) == 1:
        close = difflib.get_close_matches(dotted, list(schema), n=1)
        same_leaf = [k for k in all_keys if k.endswith("." + dotted)]
        return close[0] if close else (same_leaf[0] if same_leaf else None)
    section, leaf = parts[0], parts[-1]
    if section in schema:
        close = difflib.get_close_matches(leaf, schema[section], n=1, cutoff=0.75)
        if close:
            return f"{section}.{close[0]}"
    same_leaf = [k for k in all_keys if k.endswith("." + leaf)]
    if same_leaf:
        return same_leaf[0]
    close = difflib.get_close_matches(dotted, all_keys, n=1, cutoff=0.6)
    if close:
        return close[0]
    close = difflib.get_close_matches(leaf, [k.split(".")[1] for k in all_keys], n=1)
    return next((k for k in all_keys if close and k.endswith("." + close[0])), None)


def check_keys(update: Mapping[str, Any]) -> None:
    """Every key of a (partial) nested config must exist; sections must be mappings."""
    schema = _schema()
    for section, values in update.items():
        if section not in schema:
            hint = suggest_key(str(section))
            raise ConfigError(f"unknown config section '{section}'" + (f" (did you mean '{hint}'?)" if hint else ""))
        if not isinstance(values, Mapping):
            raise ConfigError(f"config key '{section}' must be a mapping, got {values!r}")
        for key in values:
            if key not in schema[section]:
                hint = suggest_key(f"{section}.{key}")
                raise ConfigError(f"unknown config key '{section}.{key}'" + (f" (did you mean '{hint}'?)" if hint else ""))
