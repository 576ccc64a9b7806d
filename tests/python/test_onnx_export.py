"""ONNX export: `localmamba export --format onnx` writes a standard-ONNX file (the scan kernel as
an ONNX Scan loop) that onnxruntime runs within the "onnx" tolerance rule, for one *_test model
of each family; the decomposition of the inference kernel matches the kernel on random inputs of
both input modes."""
import pytest
import torch

import onnx  # the test extra installs onnx, onnxscript, onnxruntime (conftest checks)
import onnxruntime

import localmamba
from localmamba.cli import main as cli_main
from localmamba.export.onnx import directional_scan_infer_decomposition
from localmamba.ops import directional_scan_channels_last
from localmamba.ops.scan_table import scan_table

from _tolerance import assert_close, assert_close_by_rule


@pytest.mark.parametrize("name", ["local_vim_test_middle_cls_token", "local_vssm_test"])
def test_export_command_onnx_runs_in_onnxruntime(name, tmp_path, capsys):
    torch.manual_seed(0)
    model = localmamba.create_model(name).eval()
    ckpt = tmp_path / "weights.pth"
    torch.save(model.state_dict(), ckpt)
    out = tmp_path / f"{name}.onnx"
    argv = ["export", name, "--checkpoint", str(ckpt), "--format", "onnx", "--img-size", "32", "40", "-o", str(out)]
    assert cli_main(argv) == 0
    assert "checked: max |onnxruntime - PyTorch|" in capsys.readouterr().out
    graph = onnx.load(str(out)).graph
    assert "Scan" in {n.op_type for n in graph.node}, "the recurrence should be an ONNX Scan loop"
    assert {n.domain for n in graph.node} <= {"", "ai.onnx"}, "standard ONNX operators only"
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = torch.randn(1, 3, 32, 40)
    (got,) = session.run(None, {"image": x.numpy()})
    with torch.no_grad():
        assert_close_by_rule(torch.from_numpy(got), model(x), "onnx", f"{name} in onnxruntime")


def _random_inputs(sequence_inputs: bool, with_z_by_token: bool):
    g = torch.Generator().manual_seed(3)
    table = scan_table(["h", "w2_flip", "v", "w3"], 5, 7)  # odd grid: windows overhang, padding steps
    K, L = table.index.shape
    T, batch, dim, rank, n = table.num_tokens, 2, 6, 3, 4
    steps = L if sequence_inputs else T
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    u = r(batch, K, L, dim) if sequence_inputs else r(batch, T, dim)
    z = r(batch, T, dim) if with_z_by_token else r(batch, K, steps, dim)
    args = dict(dt_proj_weight=r(K, dim, rank) * 0.5, D=r(K * dim), z=z, delta_bias=r(K * dim) * 0.5,
                weights=r(K).softmax(0), delta_softplus=True, sequence_inputs=sequence_inputs)
    A = -torch.rand(K * dim, n, generator=g) - 0.1
    return (u, r(batch, K, steps, rank), A, r(batch, K, steps, n), r(batch, K, steps, n), table.index, T), args


@pytest.mark.parametrize("sequence_inputs,z_by_token", [(False, False), (False, True), (True, True), (True, False)])
def test_decomposition_matches_inference_kernel(sequence_inputs, z_by_token):
    (u, dt, A, B, C, index, T), kw = _random_inputs(sequence_inputs, z_by_token)
    want = directional_scan_channels_last(u, dt, A, B, C, index, T, **kw)
    got = directional_scan_infer_decomposition(
        u, dt, kw["dt_proj_weight"], A, B, C, kw["D"], kw["z"], kw["delta_bias"], kw["weights"], index, T,
        kw["delta_softplus"], sequence_inputs)
    assert_close(got, want, torch.float32, f"decomposition (sequence_inputs={sequence_inputs})")


def test_export_command_writes_a_loadable_pt2(tmp_path, capsys):
    out = tmp_path / "vssm.pt2"
    assert cli_main(["export", "local_vssm_test", "--format", "pt2", "--img-size", "32", "32", "-o", str(out)]) == 0
    assert "checked: max |torch.export.load - PyTorch|" in capsys.readouterr().out
    model = localmamba.create_model("local_vssm_test").eval()
    program = torch.export.load(str(out))
    model.load_state_dict(program.state_dict)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert_close_by_rule(program.module()(x), model(x), "compile", "loaded .pt2")
