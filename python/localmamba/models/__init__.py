"""LocalMamba models: the LocalVim and LocalVMamba families, their search supernets and backbones.

    >>> import localmamba
    >>> model = localmamba.create_model("local_vim_tiny", num_classes=100)
    >>> localmamba.list_models("local_vssm*")

Every model is also registered in timm when timm is installed (``timm.create_model(name)``).
"""
from . import local_vim, local_vmamba  # noqa: F401  (registers the entrypoints)
from ._checkpoint import adapt_state_dict, load_checkpoint, load_state_dict_file
from ._registry import create_model, get_model_cfg, is_model, list_models, model_entrypoint, register_model
from .local_vim import LocalVim, LocalVimBackbone
from .local_vmamba import LocalVMamba, LocalVMambaBackbone

__all__ = [
    "LocalVMamba",
    "LocalVMambaBackbone",
    "LocalVim",
    "LocalVimBackbone",
    "adapt_state_dict",
    "create_model",
    "get_model_cfg",
    "is_model",
    "list_models",
    "load_checkpoint",
    "load_state_dict_file",
    "model_entrypoint",
    "register_model",
]

from . import _timm  # noqa: E402,F401  (registers in timm when it is importable)
