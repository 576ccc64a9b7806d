"""The installed Python package carries the C++ core as a CMake package (issue 15): another
project finds it through `python -m localmamba --cmake-dir` and builds examples/cpp against it."""
import os
import shutil
import subprocess
import sys

import localmamba

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def test_cmake_dir_holds_the_package_config_headers_and_library():
    folder = localmamba.get_cmake_dir()
    printed = subprocess.run([sys.executable, "-m", "localmamba", "--cmake-dir"], capture_output=True, text=True,
                             check=True).stdout.strip()
    assert printed == folder
    assert os.path.isfile(os.path.join(folder, "localmambaConfig.cmake"))
    assert os.path.isfile(os.path.join(folder, "localmambaConfigVersion.cmake"))
    package_root = os.path.abspath(os.path.join(folder, "..", "..", ".."))
    headers = sorted(os.listdir(os.path.join(package_root, "include", "localmamba")))
    assert {"scan_order.h", "indexed_gather.h", "selective_scan.h", "parallel.h"} <= set(headers)
    assert not [h for h in headers if h.endswith((".cuh", ".inc")) or "kernel" in h]  # no internals
    assert os.path.isfile(os.path.join(package_root, "lib", "liblocalmamba_core.a"))


def test_example_builds_against_the_installed_python_package(tmp_path):
    cmake = shutil.which("cmake")
    assert cmake, "cmake is needed by the tests (it builds the package too)"
    build = str(tmp_path / "build")
    configure = subprocess.run(
        [cmake, "-S", os.path.join(REPO_ROOT, "examples", "cpp"), "-B", build, "-DCMAKE_BUILD_TYPE=Release",
         f"-Dlocalmamba_DIR={localmamba.get_cmake_dir()}", "-DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF"],
        capture_output=True, text=True)
    assert configure.returncode == 0, configure.stdout + configure.stderr
    assert f"from {localmamba.get_cmake_dir()}" in configure.stdout
    built = subprocess.run([cmake, "--build", build], capture_output=True, text=True)
    assert built.returncode == 0, built.stdout + built.stderr
    run = subprocess.run([os.path.join(build, "localmamba_example")], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "local scan exact" in run.stdout and "checksum" in run.stdout
