"""Pretrained weights by name (through a local cache / file URL: no network) and the timm contract."""
import hashlib
import subprocess
import sys

import pytest
import torch

import localmamba
from localmamba.models import get_model_cfg


def _write_release_style(path, model):
    torch.save({"model": model.state_dict(), "epoch": 299}, path)  # the release's layout
    return path.as_uri()


def test_pretrained_downloads_caches_and_loads_strictly(tmp_path):
    source = localmamba.create_model("local_vim_test")
    url = _write_release_style(tmp_path / "local_vim_test.ckpt", source)
    cache = tmp_path / "cache"
    model = localmamba.create_model("local_vim_test", pretrained=True, cache_dir=cache,
                                   pretrained_cfg_overlay=dict(url=url))
    assert (cache / "local_vim_test.ckpt").is_file()
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    assert model.pretrained_cfg["url"] == url
    # second time from the cache: the URL is not read again
    again = localmamba.create_model("local_vim_test", pretrained=True, cache_dir=cache,
                                    pretrained_cfg_overlay=dict(url=(tmp_path / "gone.ckpt").as_uri(),
                                                                file="local_vim_test.ckpt"))
    assert torch.equal(again.head.weight, source.head.weight)


def test_pretrained_checks_sha256_when_recorded(tmp_path):
    source = localmamba.create_model("local_vssm_test")
    path = tmp_path / "w.ckpt"
    url = _write_release_style(path, source)
    good = hashlib.sha256(path.read_bytes()).hexdigest()
    ok = localmamba.create_model("local_vssm_test", pretrained=True, cache_dir=tmp_path / "a",
                                 pretrained_cfg_overlay=dict(url=url, sha256=good))
    assert torch.equal(ok.classifier.head.weight, source.classifier.head.weight)
    with pytest.raises(RuntimeError, match="SHA-256"):
        localmamba.create_model("local_vssm_test", pretrained=True, cache_dir=tmp_path / "b",
                                pretrained_cfg_overlay=dict(url=url, sha256="0" * 64))
    assert not (tmp_path / "b" / "w.ckpt").exists()


def test_pretrained_mismatch_is_an_error(tmp_path):
    url = _write_release_style(tmp_path / "other.ckpt", localmamba.create_model("local_vim_test", embed_dim=64))
    with pytest.raises(RuntimeError, match="size mismatch"):
        localmamba.create_model("local_vim_test", pretrained=True, cache_dir=tmp_path,
                                pretrained_cfg_overlay=dict(url=url))


def test_released_names_and_urls():
    for name in ("local_vim_tiny", "local_vim_tiny_middle_cls_token", "local_vim_small", "local_vssm_small"):
        url = get_model_cfg(name)["url"]
        assert url == f"https://github.com/hunto/LocalMamba/releases/download/v1.0.0/{name}.ckpt"
    with pytest.raises(ValueError, match="no released weights"):
        localmamba.create_model("local_vssm_tiny", pretrained=True)


def test_released_model_loads_from_the_cache_by_its_published_file_name(tmp_path, monkeypatch):
    source = localmamba.create_model("local_vim_tiny")
    torch.save({"model": source.state_dict()}, tmp_path / "local_vim_tiny.ckpt")
    monkeypatch.setenv("LOCALMAMBA_CACHE", str(tmp_path))
    model = localmamba.create_model("local_vim_tiny", pretrained=True)
    assert torch.equal(model.pos_embed, source.pos_embed)


timm = pytest.importorskip("timm")


def test_registered_in_timm_on_import_localmamba():
    code = "import timm, localmamba; print(timm.is_model('local_vim_tiny'), timm.is_model('local_vssm_test'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.split() == ["True", "True"], out.stderr[-2000:]


def test_timm_pretrained_and_features_only(tmp_path):
    source = localmamba.create_model("local_vssm_test")
    url = _write_release_style(tmp_path / "v.ckpt", source)
    model = timm.create_model("local_vssm_test", pretrained=True, pretrained_cfg_overlay=dict(url=url),
                              cache_dir=tmp_path / "cache")
    assert torch.equal(model.classifier.head.weight, source.classifier.head.weight)

    backbone = timm.create_model("local_vssm_test", features_only=True, out_indices=(1, 3))
    info = backbone.feature_info
    assert info.channels() == [16, 64] and info.reduction() == [8, 32]
    assert info.module_name() == ["layers.1", "layers.3"] and info.out_indices == (1, 3)
    feats = backbone(torch.randn(1, 3, 64, 64))
    assert [f.shape[1] for f in feats] == info.channels()
    assert [64 // f.shape[-1] for f in feats] == info.reduction()
    vim = timm.create_model("local_vim_test", features_only=True, out_indices=(0, 1))
    assert vim.feature_info.channels() == [32, 32] and vim.feature_info.reduction() == [8, 8]


def test_segmentation_models_pytorch_tu_encoder():
    import segmentation_models_pytorch as smp  # the test extra installs it (conftest checks)
    model = smp.Unet("tu-local_vssm_test", encoder_weights=None, classes=3).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64))
    assert out.shape == (1, 3, 64, 64)
