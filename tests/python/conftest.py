
import pytest
import torch

import localmamba


def cuda_available() -> bool:
    return torch.cuda.is_available() and localmamba._C.cuda_device_count() > 0


# Packages the suite needs (the `test` extra of pyproject.toml): missing ones stop the run with one
# line saying what to install, instead of tests skipping themselves silently.
REQUIRED_TEST_PACKAGES = {"sklearn": "scikit-learn", "timm": "timm", "torchvision": "torchvision",
                          "hypothesis": "hypothesis", "pycocotools": "pycocotools", "onnx": "onnx",
                          "onnxruntime": "onnxruntime", "onnxscript": "onnxscript",
                          "segmentation_models_pytorch": "segmentation-models-pytorch"}


def pytest_configure(config):
    import importlib.util

    missing = [pip_name for module, pip_name in REQUIRED_TEST_PACKAGES.items()
               if importlib.util.find_spec(module) is None]
    if missing:
        raise pytest.UsageError(
            f"the tests need {', '.join(missing)}: pip install '.[test]' (or bash scripts/test.sh --install)")


def pytest_collection_modifyitems(config, items):
    if cuda_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device: " + localmamba._C.cuda_status())
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield

