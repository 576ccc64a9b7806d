import os

import pytest
import torch

import localmamba


def cuda_available() -> bool:
    return torch.cuda.is_available() and localmamba._C.cuda_device_count() > 0


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


SHARED_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared")
