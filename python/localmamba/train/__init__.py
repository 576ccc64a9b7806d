"""Training, evaluation and direction-search loop (timm-style), YAML configs, checkpoints."""
from .checkpoint import atomic_save_safetensors, atomic_torch_save, load_training_checkpoint
from .config import ConfigError, default_config, list_configs, load_config
from .engine import build_model, evaluate, run_training

__all__ = [
    "ConfigError",
    "atomic_save_safetensors",
    "atomic_torch_save",
    "build_model",
    "default_config",
    "evaluate",
    "list_configs",
    "load_config",
    "load_training_checkpoint",
    "run_training",
]
