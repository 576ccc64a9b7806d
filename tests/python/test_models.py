"""Models: registry, official state-dict layout, strict loads, training step, backends, input sizes."""
import pytest
import torch
from _tolerance import assert_close_by_rule

import localmamba
from localmamba.models import LocalVim, LocalVimBackbone, LocalVMamba, LocalVMambaBackbone, create_model, list_models
from localmamba.nn import MultiMamba, SS2D

from test_data_files import official_manifest

RELEASED = [
    "local_vim_tiny", "local_vim_tiny_middle_cls_token", "local_vim_small", "local_vim_tiny_search",
    "local_vim_tiny_wo_search", "local_vssm_tiny", "local_vssm_small", "local_vssm_tiny_search",
    "local_vssm_small_search",
]
TINY = ["local_vim_test", "local_vim_test_middle_cls_token", "local_vim_test_search", "local_vssm_test",
        "local_vssm_test_search"]
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "int64": torch.int64}

# the default backend (native kernels); backend comparisons name both explicitly
BACKEND = None


def _manifest(name):
    return official_manifest(name)


def _meta_model(name, **kwargs):
    with torch.device("meta"):
        return create_model(name, **kwargs)


# ---------------------------------------------------------------------------- registry
def test_registry_lists_every_model():
    names = list_models()
    for name in RELEASED + TINY + ["local_vim_tiny_plain", "local_vssm_tiny_plain"]:
        assert name in names
    assert "local_vim_test" not in list_models(include_test_variants=False)
    assert list_models("local_vssm_*", include_test_variants=False) == sorted(
        ["local_vssm_tiny", "local_vssm_small", "local_vssm_tiny_search", "local_vssm_small_search",
         "local_vssm_tiny_plain", "local_vssm_small_plain"])
    assert localmamba.create_model is create_model
    assert localmamba.list_models is list_models


def test_unknown_model_name():
    with pytest.raises(ValueError, match="unknown model 'local_vim_huge'"):
        create_model("local_vim_huge")


def test_pretrained_without_checkpoint_is_a_clear_error():
    with pytest.raises(ValueError, match="checkpoint_path"):
        create_model("local_vim_test", pretrained=True)


def test_timm_registration():
    try:
        import timm
    except Exception as exc:  # timm is optional
        pytest.skip(f"timm not importable: {exc}")
    import localmamba.models  # noqa: F401  (registers)

    assert "local_vim_tiny" in timm.list_models("local_*")
    model = timm.create_model("local_vssm_test", num_classes=7)
    assert isinstance(model, LocalVMamba) and model.num_classes == 7
    model = timm.create_model("local_vim_test", pretrained=False, drop_path_rate=0.1)
    assert isinstance(model, LocalVim) and model.drop_path_rate == 0.1


# ---------------------------------------------------------------------------- official layout
@pytest.mark.parametrize("name", RELEASED)
def test_state_dict_matches_official_manifest(name):
    manifest = _manifest(name)
    model = _meta_model(name)
    ours = [[k, list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in model.state_dict().items()]
    assert ours == manifest["state_dict"]  # keys, shapes, dtypes and order
    assert sum(p.numel() for p in model.parameters()) == manifest["num_params"]
    if not manifest["search_supernet"]:
        directions = model.layer_directions if isinstance(model, LocalVim) else model.block_directions
        assert [list(d) for d in directions] == manifest["directions"]
    else:
        assert model.search


@pytest.mark.parametrize("name", RELEASED)
def test_strict_load_of_synthesised_official_state_dict(name):
    manifest = _manifest(name)
    model = _meta_model(name)
    state = {k: torch.empty(shape, dtype=DTYPES[dtype], device="meta") for k, shape, dtype in manifest["state_dict"]}
    result = model.load_state_dict(state, strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys


def test_released_param_counts():
    expected = {"local_vim_tiny": 7_994_152, "local_vim_small": 27_783_784, "local_vim_tiny_middle_cls_token": 7_994_536,
                "local_vssm_tiny": 25_527_160, "local_vssm_small": 49_748_536}
    for name, count in expected.items():
        assert sum(p.numel() for p in _meta_model(name).parameters()) == count, name


def test_parameters_are_independent_per_direction():
    """SPEC 1.7: the release aliases a layer's A_log on CPU; ours are separate tensors."""
    model = create_model("local_vim_test")
    mixer = model.layers[0].mixer
    ptrs = {getattr(mixer, f"A_log_{i}").data_ptr() for i in range(4)}
    assert len(ptrs) == 4


# ---------------------------------------------------------------------------- init & kwargs
def test_initialisation_as_released():
    model = create_model("local_vim_test")  # depth 2
    mixer = model.layers[0].mixer
    assert torch.equal(mixer.dt_proj_0.bias, torch.zeros_like(mixer.dt_proj_0.bias))
    assert_close_by_rule(mixer.A_log_1, torch.log(torch.arange(1, 9.0)).expand(mixer.d_inner, 8), "exact")
    assert torch.equal(mixer.D_2, torch.ones_like(mixer.D_2))
    bound = (1 / mixer.d_inner) ** 0.5 / 2 ** 0.5  # kaiming-uniform(a=sqrt 5) / sqrt(depth)
    assert mixer.out_proj.weight.abs().max() <= bound + 1e-6
    assert mixer.in_proj.weight.std().item() == pytest.approx(0.02, rel=0.2)
    vssm = create_model("local_vssm_test")
    op = vssm.layers[0].blocks[0].op
    dt = torch.nn.functional.softplus(op.dt_projs_bias)
    assert dt.min() >= 1e-4 and dt.max() <= 0.1 + 1e-6
    assert_close_by_rule(op.A_logs, torch.log(torch.arange(1, 5.0)).expand_as(op.A_logs), "exact")


def test_constructors_honour_kwargs():
    m = create_model("local_vim_test", num_classes=3, drop_path_rate=0.2, img_size=48, in_chans=1, backend=BACKEND)
    assert m.num_classes == 3 and m.head.out_features == 3 and m.drop_path_rate == 0.2
    assert m.pos_embed.shape[1] == 36 and m.patch_embed.proj.in_channels == 1
    assert m.drop_path.drop_prob == pytest.approx(0.2)  # the final add; blocks follow [0] + linspace
    assert m(torch.randn(2, 1, 48, 48)).shape == (2, 3)
    v = create_model("local_vssm_test", num_classes=0, directions=["h", "v"], drop_path_rate=0.3, backend=BACKEND)
    assert v.num_classes == 0 and all(d == ("h", "v") for d in v.block_directions)
    assert v(torch.randn(1, 3, 32, 32)).shape == (1, 64)
    assert v.layers[-1].blocks[-1].drop_path.drop_prob == pytest.approx(0.3)
    full = _meta_model("local_vssm_tiny", num_classes=10, drop_path_rate=0.0)
    assert full.classifier.head.out_features == 10
    per_layer = [["h", "w2"], ["v_flip", "w7"]]
    assert create_model("local_vim_test", directions=per_layer).layer_directions == [("h", "w2"), ("v_flip", "w7")]
    s = create_model("local_vim_test", directions="h,v", search=True)
    assert s.search and s.layers[0].mixer.multi_scan.weights.shape == (2, 1, 1, 1)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="unknown scan direction 'diag'"):
        create_model("local_vim_test", directions=["h", "diag"])
    with pytest.raises(ValueError, match="per-layer lists"):
        create_model("local_vim_test", directions=[["h"], ["v"], ["h"]])
    with pytest.raises(ValueError, match="per-block lists"):
        create_model("local_vssm_test", directions=[["h"]] * 3)
    model = create_model("local_vim_test")
    with pytest.raises(ValueError, match="expected 3 image channels, got 1"):
        model(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match="expected 3 image channels, got 4"):
        create_model("local_vssm_test")(torch.randn(1, 4, 32, 32))


# ---------------------------------------------------------------------------- training step
@pytest.mark.parametrize("name", TINY)
def test_forward_backward_every_parameter_gets_a_gradient(name):
    model = create_model(name, backend="reference", drop_path_rate=0.1).train()
    # 64x64 keeps LocalVMamba's last grid at 2x2 (on a 1x1 grid A cannot influence anything)
    x = torch.randn(2, 3, 64, 64)
    y = model(x)
    assert y.shape == (2, 10)
    y.logsumexp(-1).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, f"{pname} has an all-zero gradient"


def _output_and_gradients(model, x, seed=3):
    torch.manual_seed(seed)  # drop path draws the same masks in both runs
    x = x.clone().requires_grad_(True)
    outs = model(x)
    outs = outs if isinstance(outs, list) else [outs]
    loss = sum((o * torch.linspace(-1, 1, o.numel()).view_as(o)).sum() for o in outs)
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, [x, *params], allow_unused=True)  # a backbone leaves later stages unused
    return [o.detach() for o in outs], [g for g in grads if g is not None]


@pytest.mark.parametrize("name,features_only", [
    ("local_vim_test", False), ("local_vim_test_middle_cls_token", False), ("local_vssm_test", False),
    ("local_vim_test", True), ("local_vssm_test", True)])
def test_grad_checkpointing_matches_a_run_without_it(name, features_only):
    """timm's set_grad_checkpointing: blocks recompute in backward; outputs and every gradient
    match a run without it (stochastic depth on, so the recompute must replay the RNG)."""
    torch.manual_seed(0)
    kwargs = dict(features_only=True, out_indices=(0, 1)) if features_only else {}
    model = create_model(name, drop_path_rate=0.3, **kwargs).train()
    x = torch.randn(2, 3, 40, 56)
    assert model.grad_checkpointing is False
    want_out, want_grads = _output_and_gradients(model, x)
    model.set_grad_checkpointing()
    assert model.grad_checkpointing is True
    calls = []
    handle = model.layers[0].register_forward_pre_hook(lambda *a: calls.append(1)) if name.startswith("local_vim") \
        else model.layers[0].blocks[0].register_forward_pre_hook(lambda *a: calls.append(1))
    got_out, got_grads = _output_and_gradients(model, x)
    assert len(calls) == 2, "a checkpointed block runs again in backward"
    assert len(got_grads) == len(want_grads) > 10
    for got, want in zip(got_out + got_grads, want_out + want_grads):
        assert_close_by_rule(got, want, "exact")
    with torch.no_grad():  # no gradients recorded: the blocks run once, as without checkpointing
        calls.clear()
        model(x)
        assert len(calls) == 1
    handle.remove()
    model.set_grad_checkpointing(False)
    with pytest.raises(TypeError, match="enable must be a bool"):
        model.set_grad_checkpointing("yes")


def test_release_use_checkpoint_turns_on_grad_checkpointing():
    kw = dict(depths=[1, 1], dims=[16, 32], num_classes=3, directions=[["h", "v"]] * 2)
    assert LocalVMamba.from_release_kwargs(use_checkpoint=True, **kw).grad_checkpointing is True
    assert LocalVMamba.from_release_kwargs(**kw).grad_checkpointing is False


# ---------------------------------------------------------------------------- backends
@pytest.mark.parametrize("name", TINY)
def test_native_and_reference_backends_agree_tiny(name):
    model = create_model(name).eval()
    x = torch.randn(2, 3, 40, 24)
    with torch.no_grad():
        a = model.set_backend("native")(x)
        b = model.set_backend("reference")(x)
    assert_close_by_rule(a, b, "backends")


@pytest.mark.parametrize("name", RELEASED)
def test_native_and_reference_backends_agree_released(name):
    """Every released model, at a small input to keep CI fast (windows still pad, grids are non-square)."""
    torch.manual_seed(0)
    model = create_model(name).eval()
    size = (48, 64) if name.startswith("local_vim") else (32, 48)  # non-square grids, w7 padding
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        a = model.set_backend("native")(x)
        b = model.set_backend("reference")(x)
    assert_close_by_rule(a, b, "backends")


def test_backend_argument_and_global_default():
    model = create_model("local_vssm_test", backend="reference")
    assert all(m.backend == "reference" for m in model.modules() if isinstance(m, SS2D))
    model.set_backend(None)
    assert all(m.backend is None for m in model.modules() if isinstance(m, SS2D))
    with pytest.raises(ValueError, match="backend"):
        create_model("local_vim_test", backend="cuda-magic")(torch.randn(1, 3, 32, 32))


# ---------------------------------------------------------------------------- input sizes
@pytest.mark.parametrize("name", ["local_vim_test", "local_vim_test_middle_cls_token", "local_vssm_test"])
@pytest.mark.parametrize("size", [(64, 64), (72, 40), (37, 51)])
def test_other_input_sizes(name, size):
    model = create_model(name, backend="reference").eval()
    with torch.no_grad():
        y = model(torch.randn(1, 3, *size))
    assert y.shape == (1, 10) and torch.isfinite(y).all()


@pytest.mark.slow
@pytest.mark.parametrize("size", [(224, 224), (256, 256), (160, 192)])
def test_large_input_sizes(size):
    for name in ("local_vim_test", "local_vssm_test"):
        model = create_model(name, backend="reference").eval()
        with torch.no_grad():
            assert model(torch.randn(1, 3, *size)).shape == (1, 10)


def _transpose_tokens(t, H, W):  # (B, H*W, C) on an HxW grid -> (B, W*H, C) on the WxH grid
    return t.unflatten(1, (H, W)).transpose(1, 2).flatten(1, 2)


@pytest.mark.parametrize("H,W", [(3, 5), (6, 4)])
def test_vertical_scan_is_correct_on_non_square_grids(H, W):
    """SPEC 1.7: 'v' on an HxW grid is 'h' on the transposed grid (the release gets this wrong for H != W)."""
    torch.manual_seed(0)
    vert = MultiMamba(16, ["v", "v_flip"], backend="reference")
    horiz = MultiMamba(16, ["h", "h_flip"], backend="reference")
    horiz.load_state_dict(vert.state_dict())
    x = torch.randn(2, H * W, 16)
    with torch.no_grad():
        a = vert(x, (H, W))
        b = _transpose_tokens(horiz(_transpose_tokens(x, H, W), (W, H)), W, H)
    assert_close_by_rule(a, b, "same_math")

    ss_v = SS2D(8, ["v", "v_flip"], backend="reference")
    ss_h = SS2D(8, ["h", "h_flip"], backend="reference")
    ss_h.load_state_dict(ss_v.state_dict())
    u = torch.randn(2, ss_v.d_inner, H, W)
    with torch.no_grad():
        a = ss_v.forward_core(u)
        b = _transpose_tokens(ss_h.forward_core(u.transpose(2, 3).contiguous()), W, H)
    assert_close_by_rule(a, b, "same_math")


def test_position_embedding_follows_the_input_size():
    model = create_model("local_vim_test", backend="reference").eval()
    x = torch.randn(1, 3, 48, 40)
    big = create_model("local_vim_test", backend="reference", img_size=(48, 40)).eval()
    state = localmamba.models.adapt_state_dict(big, model.state_dict())
    big.load_state_dict(state, strict=True)
    with torch.no_grad():
        assert_close_by_rule(big(x), model(x), "same_math")


# ---------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("fmt", ["raw", "model", "state_dict", "state_dict_ema", "safetensors"])
def test_load_checkpoint_formats(tmp_path, fmt):
    src = create_model("local_vim_test_middle_cls_token", backend="reference").eval()
    state = src.state_dict()
    if fmt == "safetensors":
        from safetensors.torch import save_file

        path = tmp_path / "w.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        path = tmp_path / ("w.pth" if fmt != "model" else "w.ckpt")
        torch.save(state if fmt == "raw" else {fmt: state, "epoch": 3}, path)
    dst = create_model("local_vim_test_middle_cls_token", backend="reference").eval()
    localmamba.load_checkpoint(dst, path)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert_close_by_rule(dst(x), src(x), "exact")


def test_load_checkpoint_resizes_position_embeddings(tmp_path):
    src = create_model("local_vim_test_middle_cls_token", backend="reference").eval()
    torch.save({"model": src.state_dict()}, tmp_path / "w.pth")
    dst = create_model("local_vim_test_middle_cls_token", backend="reference", img_size=64).eval()
    localmamba.load_checkpoint(dst, tmp_path / "w.pth")
    assert dst.pos_embed.shape == (1, 65, 32)
    assert torch.equal(dst.pos_embed[0, 32], src.pos_embed[0, 8])  # the class token's entry moved to the middle
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert_close_by_rule(dst(x), src(x), "same_math")


def test_load_checkpoint_errors(tmp_path):
    model = create_model("local_vssm_test")
    with pytest.raises(FileNotFoundError):
        localmamba.load_checkpoint(model, tmp_path / "missing.pth")
    torch.save({"epoch": 1}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="no state dict"):
        localmamba.load_checkpoint(model, tmp_path / "bad.pth")
    other = create_model("local_vssm_test", num_classes=5)
    torch.save(other.state_dict(), tmp_path / "other.pth")
    with pytest.raises(RuntimeError, match="size mismatch"):
        localmamba.load_checkpoint(model, tmp_path / "other.pth")


# ---------------------------------------------------------------------------- backbones
def test_local_vmamba_backbone(tmp_path):
    cls_model = create_model("local_vssm_test")
    torch.save({"state_dict": cls_model.state_dict()}, tmp_path / "w.pth")
    bb = create_model("local_vssm_test", features_only=True, backend="reference").eval()
    assert isinstance(bb, LocalVMambaBackbone)
    result = localmamba.load_checkpoint(bb, tmp_path / "w.pth")
    assert sorted(result.missing_keys) == [f"outnorm{i}.{p}" for i in range(4) for p in ("bias", "weight")]
    feats = bb(torch.randn(2, 3, 64, 96))
    assert [tuple(f.shape) for f in feats] == [(2, 8, 16, 24), (2, 16, 8, 12), (2, 32, 4, 6), (2, 64, 2, 3)]
    assert [i["num_chs"] for i in bb.feature_info] == [8, 16, 32, 64]
    assert [i["reduction"] for i in bb.feature_info] == [4, 8, 16, 32]
    sub = create_model("local_vssm_test", features_only=True, out_indices=(1, 3), backend="reference")
    assert [f.shape[1] for f in sub(torch.randn(1, 3, 32, 32))] == [16, 64]


def test_local_vim_backbone():
    bb = create_model("local_vim_test", features_only=True, out_indices=(0, 1), backend="reference").eval()
    assert isinstance(bb, LocalVimBackbone)
    feats = bb(torch.randn(2, 3, 48, 64))
    assert [tuple(f.shape) for f in feats] == [(2, 32, 6, 8), (2, 32, 6, 8)]
    mid = create_model("local_vim_test_middle_cls_token", features_only=True, out_indices=(1,), backend="reference")
    assert tuple(mid(torch.randn(1, 3, 32, 32))[0].shape) == (1, 32, 4, 4)
    full = _meta_model("local_vim_tiny", features_only=True)
    assert full.out_indices == (4, 9, 14, 19) and not hasattr(full, "head")


# compile / export: tests/python/test_compile_export.py


# ---------------------------------------------------------------------------- low precision
@pytest.mark.parametrize("name", ["local_vim_test", "local_vim_test_middle_cls_token", "local_vssm_test"])
def test_bfloat16_autocast_and_bfloat16_weights(name):
    model = create_model(name, backend=BACKEND).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model(x)
        half = model.to(torch.bfloat16)(x.bfloat16())
    for out in (mixed, half):
        assert out.dtype == torch.bfloat16
        assert ((out.float() - ref).abs().max() / ref.abs().max()).item() < 0.05


def test_models_work_without_timm():
    """timm is optional: when it cannot be imported the registry still works."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['timm'] = None\n"
        "import localmamba, localmamba.models._timm as t\n"
        "assert not t.TIMM_AVAILABLE\n"
        "m = localmamba.create_model('local_vssm_test', num_classes=3)\n"
        "assert m.num_classes == 3 and 'local_vim_tiny' in localmamba.list_models()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ---------------------------------------------------------------------------- bad kwargs (#14 item 3)
@pytest.mark.parametrize("name", ["local_vim_test", "local_vssm_test"])
@pytest.mark.parametrize("kwargs,error,words", [
    (dict(num_classes="10"), TypeError, "num_classes"),
    (dict(num_classes=-1), ValueError, "num_classes"),
    (dict(directions=4), TypeError, "directions"),
    (dict(directions=["h", "q"]), ValueError, "unknown scan direction 'q'"),
    (dict(img_size=0), ValueError, "img_size"),
    (dict(in_chans=0), ValueError, "in_chans"),
    (dict(patch_size=(8,)), ValueError, "patch_size"),
    (dict(drop_path_rate=1.5), ValueError, "drop_path_rate"),
    (dict(d_state=2.5), TypeError, "d_state"),
    (dict(backend="fast"), ValueError, "backend"),
    (dict(search="yes"), TypeError, "search"),
])
def test_bad_model_kwargs_fail_at_construction_naming_them(name, kwargs, error, words):
    with pytest.raises(error, match=words):
        create_model(name, **kwargs)
