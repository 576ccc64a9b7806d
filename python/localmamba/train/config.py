"""Training configuration: nested defaults, YAML files (with `_base_` inheritance),
dotted command-line overrides, and validation with clear error messages.

A config is a plain nested dict checked against the typed schema in `schema.py`
(`typed_config(cfg)` gives it as dataclasses). `load_config(path_or_name, overrides)` returns
a fully populated, validated dict; unknown keys are errors with a "did you mean" naming the
closest key in any section (`train.epochs` -> `sched.epochs`).
Packaged recipes live in `localmamba/configs/` and can be named without the `.yaml`
suffix, e.g. `imagenet/local_vim_tiny` or `search/local_vim_tiny_search`.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union

import yaml

from .schema import Config, ConfigError, check_keys, suggest_key

__all__ = [
    "DEFAULTS",
    "ConfigError",
    "CONFIG_DIR",
    "default_config",
    "list_configs",
    "load_config",
    "apply_overrides",
    "resolve_config_path",
    "validate_config",
    "typed_config",
    "suggest_key",
    "dump_config",
    "deep_merge",
    "read_yaml",
    "parse_override",
]

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


#: Every key a config may contain, with its default (`None`: unset / automatic); the rules
#: and notes per key are in `schema.py`.
DEFAULTS: Dict[str, Any] = Config().to_dict()


def default_config() -> Dict[str, Any]:
    return copy.deepcopy(DEFAULTS)


#: Recipe folders of `localmamba detect` / `segment` (another schema: localmamba.dense.config).
DENSE_RECIPE_DIRS = ("detection", "segmentation")


def list_configs() -> List[str]:
    """Names of the classification recipes shipped with the package (usable as `--config NAME`)."""
    names = []
    for path in sorted(CONFIG_DIR.rglob("*.yaml")):
        rel = path.relative_to(CONFIG_DIR).with_suffix("")
        if not rel.name.startswith("_") and rel.parts[0] not in DENSE_RECIPE_DIRS:
            names.append(rel.as_posix())
    return names


def resolve_config_path(name: Union[str, os.PathLike], relative_to: Optional[Path] = None) -> Path:
    """A config file path: an existing file, or a packaged recipe name."""
    candidates = []
    p = Path(name)
    if relative_to is not None and not p.is_absolute():
        candidates += [relative_to / p, relative_to / p.with_suffix(".yaml")]
    candidates += [p, CONFIG_DIR / p, CONFIG_DIR / (str(p) + ".yaml")]
    for c in candidates:
        if c.is_file():
            return c
    available = ", ".join(list_configs())
    raise ConfigError(f"config {str(name)!r} not found (not a file, nor a packaged recipe; packaged: {available})")


def deep_merge(base: Dict[str, Any], update: Mapping[str, Any], where: str = "") -> Dict[str, Any]:
    """Merges ``update`` into ``base`` in place (nested mappings key by key, other values
    replaced by a copy; a ``kwargs`` mapping is replaced whole); returns ``base``."""
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict) and key != "kwargs":
            deep_merge(base[key], value, f"{where}{key}.")
        else:
            base[key] = copy.deepcopy(value)
    return base


def read_yaml(path: Path, seen: Sequence[Path] = ()) -> Dict[str, Any]:
    """A recipe file as a dict, its ``_base_`` files (paths or packaged names) merged underneath;
    shared by the classification and the dense (``localmamba.dense.config``) recipes."""
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"config inheritance cycle: {' -> '.join(str(s) for s in seen)} -> {path}")
    try:
        with open(path, "r", encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping, got {type(data).__name__}")
    bases = data.pop("_base_", None)
    if bases is None:
        return data
    merged: Dict[str, Any] = {}
    for base in [bases] if isinstance(bases, str) else list(bases):
        deep_merge(merged, read_yaml(resolve_config_path(base, path.parent), [*seen, path]))
    return deep_merge(merged, data)


def parse_override(text: str) -> Dict[str, Any]:
    """`a.b.c=value` -> {"a": {"b": {"c": value}}}, the value parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value (e.g. optim.lr=5e-4)")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r}: bad key {key!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    out: Dict[str, Any] = {}
    node = out
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def apply_overrides(cfg: Dict[str, Any], overrides: Iterable[Union[str, Mapping[str, Any]]]) -> Dict[str, Any]:
    for ov in overrides:
        update = parse_override(ov) if isinstance(ov, str) else ov
        check_keys(update)
        deep_merge(cfg, update)
    return cfg


def load_config(
    config: Optional[Union[str, os.PathLike, Mapping[str, Any]]] = None,
    overrides: Iterable[Union[str, Mapping[str, Any]]] = (),
    validate: bool = True,
) -> Dict[str, Any]:
    """Defaults <- config file (or mapping) <- overrides, then validated."""
    cfg = default_config()
    if config is not None:
        if isinstance(config, Mapping):
            data = copy.deepcopy(dict(config))
            source = "<mapping>"
        else:
            path = resolve_config_path(config)
            data = read_yaml(path)
            source = str(path)
        try:
            check_keys(data)
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None
        deep_merge(cfg, data)
    apply_overrides(cfg, overrides)
    if validate:
        validate_config(cfg)
    return cfg


def validate_config(cfg: Dict[str, Any]) -> Dict[str, Any]:
    """Checks every key and value against the typed schema (`schema.Config`), with messages
    naming the offending key; normalises cfg in place (numbers parsed, choices lower-cased)
    and returns it."""
    cfg.update(Config.from_dict(cfg).to_dict())
    return cfg


def typed_config(cfg: Mapping[str, Any]) -> Config:
    """The validated config as dataclasses (attribute access: cfg.optim.lr)."""
    return Config.from_dict(cfg)


def dump_config(cfg: Mapping[str, Any], path: Union[str, os.PathLike]) -> None:
    from .checkpoint import atomic_write_bytes

    text = yaml.safe_dump(_plain(cfg), sort_keys=False)
    atomic_write_bytes(path, text.encode("utf-8"))


def _plain(obj):
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj
