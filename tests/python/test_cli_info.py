import json
import subprocess
import sys

import pytest

import localmamba
from localmamba.cli import main


def test_build_info_fields():
    info = localmamba.build_info()
    for key in ("version", "compiler", "simd_compiled", "simd_runtime", "cuda_compiled", "cuda_architectures", "cuda_status"):
        assert key in info
    assert info["version"] == localmamba.__version__
    if info["cuda_compiled"]:
        assert info["cuda_architectures"]
    if localmamba._C.cuda_device_count() == 0:
        assert info["cuda_status"].startswith("no CUDA device")


def test_info_json_and_png(tmp_path, capsys):
    png = tmp_path / "orders.png"
    assert main(["info", "--json", "--png", str(png), "--grid", "5x7", "--directions", "h,w2,w3_col_flip"]) == 0
    out = capsys.readouterr().out
    info = json.loads(out[: out.rindex("}") + 1])
    assert info["version"] == localmamba.__version__
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_info_rejects_bad_grid_and_direction(tmp_path):
    with pytest.raises(SystemExit):
        main(["info", "--grid", "0x3"])
    with pytest.raises(ValueError, match="unknown scan direction"):
        main(["info", "--png", str(tmp_path / "x.png"), "--directions", "h,zigzag"])


def test_console_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "localmamba", "info"], capture_output=True, text=True, check=True)
    assert "localmamba" in result.stdout and "CUDA" in result.stdout
