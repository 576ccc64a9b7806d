"""Data: the embedded digits, CIFAR python-format folders, ImageFolder trees, sharded resumable
samplers, deterministic per-sample augmentation, transforms and mixup."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from _tolerance import assert_close_by_rule

from localmamba.data import (
    DataError,
    SeededDataset,
    ShardedEvalSampler,
    ShardedTrainSampler,
    build_datasets,
    build_loaders,
    build_mixup,
    build_transform,
    load_cifar,
    set_train_epoch,
)
from localmamba.train import load_config

try:
    import timm  # noqa: F401

    HAVE_TIMM = True
except Exception:
    HAVE_TIMM = False


def test_digits_split_is_fixed_and_stratified():
    pytest.importorskip("sklearn")
    cfg = load_config(None, ["data.img_size=16"])
    train, val, info = build_datasets(cfg)
    assert len(train) + len(val) == 1797 and len(val) == pytest.approx(0.2 * 1797, abs=10)
    assert info["num_classes"] == 10 and info["in_chans"] == 1 and info["kind"] == "tensor"
    assert train.images.shape[1:] == (1, 16, 16) and train.images.dtype == torch.uint8
    counts = torch.bincount(val.targets, minlength=10)
    assert counts.min() >= 30  # every class held out in proportion
    train2, val2, _ = build_datasets(cfg)
    assert torch.equal(val.images, val2.images) and torch.equal(train.targets, train2.targets)
    assert 0.0 < info["mean"][0] < 1.0 and 0.0 < info["std"][0] < 1.0


def _write_cifar(root, num_classes, n_train=20, n_test=10):
    rng = np.random.RandomState(0)
    if num_classes == 10:
        d = root / "cifar-10-batches-py"
        d.mkdir()
        for i in range(1, 6):
            with open(d / f"data_batch_{i}", "wb") as f:
                pickle.dump({b"data": rng.randint(0, 256, (n_train, 3072), dtype=np.uint8),
                             b"labels": list(rng.randint(0, 10, n_train))}, f)
        with open(d / "test_batch", "wb") as f:
            pickle.dump({b"data": rng.randint(0, 256, (n_test, 3072), dtype=np.uint8),
                         b"labels": list(range(10))[:n_test]}, f)
        with open(d / "batches.meta", "wb") as f:
            pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, f)
    else:
        d = root / "cifar-100-python"
        d.mkdir()
        for name, n in (("train", n_train), ("test", n_test)):
            with open(d / name, "wb") as f:
                pickle.dump({b"data": rng.randint(0, 256, (n, 3072), dtype=np.uint8),
                             b"fine_labels": list(rng.randint(0, 100, n))}, f)
        with open(d / "meta", "wb") as f:
            pickle.dump({b"fine_label_names": [f"f{i}".encode() for i in range(100)]}, f)
    return d


@pytest.mark.parametrize("num_classes", [10, 100])
def test_cifar_python_format(tmp_path, num_classes):
    d = _write_cifar(tmp_path, num_classes)
    for root in (tmp_path, d):  # the parent or the folder itself
        train, val, info = load_cifar(str(root), num_classes, img_size=32)
        assert len(train) == (100 if num_classes == 10 else 20) and len(val) == 10
        assert info["num_classes"] == num_classes and info["in_chans"] == 3
        assert train.classes[3] == (f"c3" if num_classes == 10 else "f3")
    # pixel layout: row-major 32x32 per channel, channels R, G, B
    raw = pickle.load(open(d / ("test_batch" if num_classes == 10 else "test"), "rb"), encoding="bytes")[b"data"][0]
    assert torch.equal(val.images[0], torch.from_numpy(raw.reshape(3, 32, 32)))
    train, val, _ = load_cifar(str(tmp_path), num_classes, img_size=16)
    assert train.images.shape[-2:] == (16, 16)
    with pytest.raises(DataError, match=f"CIFAR-{num_classes} python-format files not found"):
        load_cifar(str(tmp_path / "nothing"), num_classes, 32)


def test_imagefolder(tmp_path):
    pytest.importorskip("torchvision")
    from PIL import Image

    for split in ("train", "val"):
        for c in ("cat", "dog"):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(np.full((40, 50, 3), 60 * i, dtype=np.uint8)).save(tmp_path / split / c / f"{i}.png")
    cfg = load_config(None, ["data.dataset=imagefolder", f"data.root={tmp_path}", "data.img_size=32",
                             "train.batch_size=2", "data.workers=0"])
    tl, vl, info = build_loaders(cfg)
    assert info["num_classes"] == 2 and info["classes"] == ["cat", "dog"]
    set_train_epoch(tl, 0)
    x, y = next(iter(tl))
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.float32
    xv, yv = next(iter(vl))
    assert xv.shape == (4, 3, 32, 32)
    (tmp_path / "val" / "bird").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp_path / "val" / "bird" / "0.png")
    with pytest.raises(DataError, match="class folders differ"):
        build_datasets(cfg)
    with pytest.raises(DataError, match="not found"):
        build_datasets(load_config(None, ["data.dataset=imagefolder", f"data.root={tmp_path / 'x'}"]))


def test_train_sampler_sharding_and_resume():
    n, b, w = 53, 4, 3
    single = ShardedTrainSampler(n, b * w, 0, 1, seed=7)
    ranks = [ShardedTrainSampler(n, b, r, w, seed=7) for r in range(w)]
    assert single.batches_per_epoch == ranks[0].batches_per_epoch == 53 // 12
    for epoch in (0, 1):
        single.set_epoch(epoch)
        for s in ranks:
            s.set_epoch(epoch)
        glob = list(single)
        per_rank = [list(s) for s in ranks]
        for step in range(single.batches_per_epoch):
            union = sorted(sum((pr[step * b:(step + 1) * b] for pr in per_rank), []))
            assert union == sorted(glob[step * b * w:(step + 1) * b * w])
        assert len(set(sum(per_rank, []))) == single.batches_per_epoch * b * w  # no duplicates
    single.set_epoch(0)
    e0 = list(single)
    single.set_epoch(1)
    assert list(single) != e0  # reshuffled every epoch
    single.set_epoch(0, start_batch=2)
    assert list(single) == e0[2 * b * w:] and len(single) == len(e0) - 2 * b * w
    with pytest.raises(ValueError):
        single.set_epoch(0, start_batch=99)
    with pytest.raises(DataError, match="fewer than one global batch"):
        ShardedTrainSampler(5, 4, 0, 2)


def test_eval_sampler_covers_each_sample_once():
    parts = [list(ShardedEvalSampler(11, r, 3)) for r in range(3)]
    assert sorted(sum(parts, [])) == list(range(11))


def test_seeded_augmentation_is_per_sample_deterministic():
    pytest.importorskip("sklearn")
    cfg = load_config(None, ["data.img_size=16", "aug.random_crop_padding=3", "aug.hflip=0.5"])
    train, _, info = build_datasets(cfg)
    train.transform = build_transform(cfg, info, is_training=True)
    ds = SeededDataset(train, seed=1)
    torch.manual_seed(0)
    a = [ds[i][0] for i in (5, 6, 7)]
    torch.manual_seed(123)  # the global RNG does not matter...
    b = [ds[i][0] for i in (7, 6, 5)][::-1]  # ...nor the order samples are drawn in
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert torch.equal(torch.get_rng_state(), torch.manual_seed(123).get_state())  # and it is left untouched
    ds.set_epoch(1)
    c = [ds[i][0] for i in (5, 6, 7)]
    assert not all(torch.equal(x, y) for x, y in zip(a, c))  # a new epoch, new augmentations
    assert a[0].shape == (1, 16, 16) and a[0].dtype == torch.float32


@pytest.mark.skipif(not HAVE_TIMM, reason="timm not installed")
def test_batched_fetch_matches_per_sample_fetch():
    """SeededDataset.__getitems__ (the DataLoader's batched fetch, one RNG save/restore per batch)
    gives each sample exactly what __getitem__ gives, with RandAugment and random erasing drawing
    from Python's, NumPy's and torch's RNGs, and leaves all three global RNGs as they were."""
    import random

    import numpy as np

    pytest.importorskip("sklearn")
    cfg = load_config(None, ["data.img_size=16", "aug.random_crop_padding=3", "aug.hflip=0.5",
                             "aug.auto_augment=rand-m9-mstd0.5-inc1", "aug.reprob=0.5"])
    train, _, info = build_datasets(cfg)
    train.transform = build_transform(cfg, info, is_training=True)
    ds = SeededDataset(train, seed=3)
    ds.set_epoch(2)
    indices = [9, 2, 31, 2, 17]
    single = [ds[i] for i in indices]
    random.seed(5), np.random.seed(5), torch.manual_seed(5)
    states = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state())
    batched = ds.__getitems__(indices)
    assert [t for _, t in batched] == [t for _, t in single]
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batched, single))
    assert random.getstate() == states[0]
    assert np.array_equal(np.random.get_state()[1], states[1])
    assert torch.equal(torch.get_rng_state(), states[2])


def test_loader_with_workers_matches_main_process():
    pytest.importorskip("sklearn")
    outs = []
    for workers in (0, 2):
        cfg = load_config(None, ["data.img_size=16", f"data.workers={workers}", "train.batch_size=16",
                                 "data.limit_train=64"])
        tl, _, _ = build_loaders(cfg)
        set_train_epoch(tl, 3, start_batch=1)
        outs.append([x for x, _ in tl])
    assert len(outs[0]) == 3
    assert all(torch.equal(a, b) for a, b in zip(*outs))


@pytest.mark.skipif(not HAVE_TIMM, reason="timm not installed")
def test_randaugment_erasing_and_mixup():
    pytest.importorskip("sklearn")
    cfg = load_config(None, ["data.img_size=16", "aug.auto_augment=rand-m9-mstd0.5-inc1", "aug.reprob=1.0",
                             "aug.mixup=0.2", "aug.cutmix=1.0", "aug.color_jitter=0.3"])
    train, _, info = build_datasets(cfg)
    t = build_transform(cfg, info, is_training=True)
    plain = build_transform(load_config(None, ["data.img_size=16"]), info, is_training=False)
    x = t(train.images[0])
    assert x.shape == (1, 16, 16) and not torch.equal(x, plain(train.images[0]))
    for seed in range(40):  # every RandAugment op (incl. the geometric ones with a fill colour) on grey images
        torch.manual_seed(seed)
        import random

        random.seed(seed)
        assert t(train.images[seed]).shape == (1, 16, 16)
    mix = build_mixup(cfg, 10)
    xb = torch.randn(8, 1, 16, 16)
    xm, ym = mix(xb.clone(), torch.arange(8) % 10)
    assert ym.shape == (8, 10)
    assert_close_by_rule(ym.sum(1), torch.ones(8), "fp32_sum")
    assert build_mixup(load_config(None), 10) is None


def test_bad_data_config_values():
    from localmamba.train import ConfigError

    with pytest.raises(ConfigError, match="aug.auto_augment"):
        load_config(None, ["aug.auto_augment=randaug"])
    with pytest.raises(ConfigError, match=r"aug\.scale"):
        load_config(None, ["aug.scale=[0.9, 0.1]"])
    with pytest.raises(ConfigError, match=r"data\.std must be positive"):
        load_config(None, ["data.std=[0.0]"])


@pytest.mark.skipif(not HAVE_TIMM, reason="timm not installed")
def test_randaugment_top_magnitude_never_posterizes_to_zero_bits():
    """mstd can push timm's magnitude to its clip at 10, where increasing posterize keeps 0 bits
    and Pillow raises; our transforms cap the magnitude just below (regression test)."""
    pytest.importorskip("sklearn")
    cfg = load_config(None, ["data.img_size=16", "aug.auto_augment=rand-m10-n4-mstd0-inc1", "aug.reprob=0.0"])
    train, _, info = build_datasets(cfg)
    t = build_transform(cfg, info, is_training=True)
    import random

    for seed in range(60):  # 4 ops of 15 per image: every op, posterize included, runs at magnitude 10
        random.seed(seed)
        torch.manual_seed(seed)
        assert t(train.images[seed % len(train.images)]).shape == (1, 16, 16)


def test_a_registered_dataset_reaches_config_cli_and_builder(monkeypatch):
    """Adding a dataset is one registration: the config's choices and root rule, the CLI's
    --dataset choices and build_datasets all read the registry."""
    from localmamba.cli import build_parser
    from localmamba.data import DatasetInfo, TensorImageDataset, dataset_names, register_dataset
    from localmamba.data import registry
    from localmamba.train import ConfigError

    monkeypatch.setattr(registry, "_DATASETS", dict(registry._DATASETS))
    images = torch.randint(0, 256, (12, 3, 8, 8), dtype=torch.uint8)
    targets = torch.arange(12) % 3

    @register_dataset("tiny_rgb", needs_root=True, description="12 random 8x8 RGB images")
    def _tiny(d):
        ds = TensorImageDataset(images, targets)
        return ds, ds, DatasetInfo(num_classes=3, in_chans=3, mean=(0.5,) * 3, std=(0.25,) * 3, classes=ds.classes,
                                   kind="tensor")

    assert "tiny_rgb" in dataset_names()
    with pytest.raises(ConfigError, match=r"data\.root must be set for dataset 'tiny_rgb'"):
        load_config(None, ["data.dataset=tiny_rgb"])
    cfg = load_config(None, ["data.dataset=tiny_rgb", "data.root=/anywhere", "data.limit_val=5"])
    train, val, info = build_datasets(cfg)
    assert len(train) == 12 and len(val) == 5 and info["num_classes"] == 3
    args = build_parser().parse_args(["train", "--dataset", "tiny_rgb", "--print-config"])
    assert args.flag_data__dataset == "tiny_rgb"
    with pytest.raises(ConfigError, match="must be one of digits, cifar10, cifar100, imagefolder, tiny_rgb"):
        load_config(None, ["data.dataset=tiny_rgbb"])
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("digits", needs_root=False, description="again")(_tiny)
