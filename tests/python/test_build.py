"""Facts about the built extension that users rely on."""
import shutil
import subprocess

import pytest

import localmamba


def _needed_libraries():
    if shutil.which("readelf") is None:
        pytest.skip("readelf not available")
    out = subprocess.run(["readelf", "-d", localmamba._C.__file__], capture_output=True, text=True, check=True).stdout
    return [line.split("[", 1)[1].rstrip("]") for line in out.splitlines() if "(NEEDED)" in line]


def test_extension_does_not_link_torch_or_dynamic_cudart():
    needed = _needed_libraries()
    assert not any(lib.startswith(("libtorch", "libc10")) for lib in needed), needed
    assert not any(lib.startswith("libcudart") for lib in needed), needed  # cudart is static
    assert not any(lib.startswith("libcuda.so") for lib in needed), needed  # loaded lazily by cudart


def test_import_without_gpu_reports_cleanly():
    count = localmamba._C.cuda_device_count()
    assert count >= 0
    if count == 0:
        assert localmamba._C.cuda_status().startswith("no CUDA device")


def test_thread_count_is_settable():
    before = localmamba._C.get_num_threads()
    try:
        localmamba._C.set_num_threads(1)
        assert localmamba._C.get_num_threads() == 1
        localmamba._C.set_num_threads(3)
        assert localmamba._C.get_num_threads() == 3
    finally:
        localmamba._C.set_num_threads(before)
