"""Dense data: the embedded generator (deterministic, COCO JSON readable by pycocotools), the COCO
loader (polygons, RLE, crowd), the ADE20K folder loader, transforms and metrics."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _tolerance import assert_close_by_rule
from PIL import Image

pycocotools = pytest.importorskip("pycocotools")
pytest.importorskip("sklearn")

from pycocotools import mask as mask_utils  # noqa: E402
from pycocotools.coco import COCO  # noqa: E402

from localmamba.dense import transforms as T  # noqa: E402
from localmamba.dense.datasets import AdeSegmentation, CocoInstances, SeededBatchSampler  # noqa: E402
from localmamba.dense.embedded import EmbeddedSpec, ensure_embedded, generate_scene  # noqa: E402
from localmamba.dense.evaluation import SegmentationMeter, coco_evaluate, slide_logits  # noqa: E402

TINY = EmbeddedSpec(num_train=6, num_val=3, size=48, min_digit=12, max_digit=24, max_objects=3)


def test_generator_is_deterministic_and_splits_differ():
    a = generate_scene(TINY, "train", 3)
    b = generate_scene(TINY, "train", 3)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    assert not np.array_equal(a[0], generate_scene(TINY, "train", 4)[0])
    assert not np.array_equal(a[0], generate_scene(TINY, "val", 3)[0])
    image, instance, classes = a
    assert image.shape == (48, 48, 3) and image.dtype == np.uint8
    assert instance.max() <= len(classes) and all(0 <= c <= 9 for c in classes)


def test_embedded_folder_is_coco_and_ade(tmp_path):
    root = ensure_embedded(TINY, tmp_path)
    assert ensure_embedded(TINY, tmp_path) == root  # cached
    coco = COCO(str(root / "annotations" / "instances_train.json"))
    assert len(coco.getImgIds()) == 6 and len(coco.getCatIds()) == 10 and coco.getAnnIds()
    ann = coco.anns[coco.getAnnIds()[0]]
    m = coco.annToMask(ann)
    ys, xs = np.nonzero(m)
    assert [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()] == pytest.approx(ann["bbox"])
    label = np.asarray(Image.open(root / "ade" / "annotations" / "training" / "00000.png"))
    assert label.min() >= 1 and label.max() <= 11
    # the semantic map agrees with the instance masks
    img_anns = coco.loadAnns(coco.getAnnIds(imgIds=[1]))
    for a in img_anns:
        assert (label[coco.annToMask(a) > 0] == a["category_id"] + 1).all()
    # a second generation in another folder writes identical files
    again = ensure_embedded(TINY, tmp_path / "again")
    assert (root / "annotations" / "instances_val.json").read_text() == \
        (again / "annotations" / "instances_val.json").read_text()


def _fabricated_coco(tmp_path):
    images = tmp_path / "coco" / "val2017"
    images.mkdir(parents=True)
    for i, (h, w) in enumerate([(40, 50), (45, 37), (36, 36)], start=1):
        Image.fromarray(np.full((h, w, 3), 60 * i, dtype=np.uint8)).save(images / f"{i:012d}.jpg")
    square = np.zeros((40, 50), dtype=np.uint8)
    square[5:20, 10:30] = 1
    rle = mask_utils.encode(np.asfortranarray(square))
    uncompressed = {"size": [45, 37], "counts": [45 * 5 + 10, 20, 25, 20] + [45 * 37 - 45 * 5 - 10 - 65]}
    anns = [
        {"id": 1, "image_id": 1, "category_id": 18, "iscrowd": 0, "area": 300.0, "bbox": [10, 5, 20, 15],
         "segmentation": [[10, 5, 30, 5, 30, 20, 10, 20]]},  # polygon
        {"id": 2, "image_id": 1, "category_id": 3, "iscrowd": 1, "area": 300.0, "bbox": [10, 5, 20, 15],
         "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()}},  # crowd, compressed RLE
        {"id": 3, "image_id": 2, "category_id": 3, "iscrowd": 0, "area": 65.0, "bbox": [5, 10, 3, 20],
         "segmentation": uncompressed},  # uncompressed RLE
    ]
    data = {"images": [{"id": i, "file_name": f"{i:012d}.jpg", "height": h, "width": w}
                       for i, (h, w) in enumerate([(40, 50), (45, 37), (36, 36)], start=1)],
            "annotations": anns, "categories": [{"id": 3, "name": "car"}, {"id": 18, "name": "dog"}]}
    (tmp_path / "coco" / "annotations").mkdir()
    ann_file = tmp_path / "coco" / "annotations" / "instances_val2017.json"
    ann_file.write_text(json.dumps(data))
    return images, ann_file


def test_coco_loader_polygons_rle_and_crowd(tmp_path):
    images, ann_file = _fabricated_coco(tmp_path)
    train = CocoInstances(images, ann_file, train=True, hflip=0.0)
    assert train.ids == [1, 2]  # image 3 has no objects
    assert train.class_names == ["car", "dog"] and train.category_ids == [3, 18]
    image, target = train[0]
    assert image.shape == (3, 40, 50) and target["labels"].tolist() == [2]  # crowd left out, dog -> label 2
    assert target["boxes"].tolist() == [[10, 5, 30, 20]]
    assert 280 <= int(target["masks"].sum()) <= 340  # the rasterised polygon
    _, target2 = train[1]
    assert int(target2["masks"].sum()) == 40 and target2["labels"].tolist() == [1]  # two 20-pixel runs
    val = CocoInstances(images, ann_file, train=False)
    assert val.ids == [1, 2, 3]
    flipped = CocoInstances(images, ann_file, train=True, hflip=1.0)
    _, tf = flipped[0]
    assert tf["boxes"].tolist() == [[20, 5, 40, 20]]
    assert torch.equal(tf["masks"], target["masks"].flip(-1))
    with pytest.raises(FileNotFoundError, match="annotation"):
        CocoInstances(images, tmp_path / "missing.json", train=True)


def test_coco_evaluate_ground_truth_scores_100(tmp_path):
    images, ann_file = _fabricated_coco(tmp_path)
    coco = COCO(str(ann_file))
    results = []
    for a in coco.dataset["annotations"]:
        if a["iscrowd"]:
            continue
        rle = coco.annToRLE(a)
        rle["counts"] = rle["counts"].decode() if isinstance(rle["counts"], bytes) else rle["counts"]
        results.append({"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
                        "score": 0.9, "segmentation": rle})
    metrics = coco_evaluate(coco, results)
    assert metrics["bbox_AP"] == pytest.approx(100.0) and metrics["segm_AP"] == pytest.approx(100.0)
    assert coco_evaluate(coco, [])["bbox_AP"] == 0.0


def _fabricated_ade(tmp_path, num_classes=150):
    rng = np.random.RandomState(0)
    for split in ("training", "validation"):
        (tmp_path / "images" / split).mkdir(parents=True)
        (tmp_path / "annotations" / split).mkdir(parents=True)
        for i, (h, w) in enumerate([(50, 70), (61, 43)]):
            Image.fromarray(rng.randint(0, 255, (h, w, 3), dtype=np.uint8)).save(
                tmp_path / "images" / split / f"ADE_{i}.jpg")
            label = rng.randint(0, num_classes + 1, (h, w)).astype(np.uint8)
            Image.fromarray(label).save(tmp_path / "annotations" / split / f"ADE_{i}.png")
    return tmp_path


def test_ade_loader_reduces_zero_label_and_crops(tmp_path):
    root = _fabricated_ade(tmp_path)
    raw = np.asarray(Image.open(root / "annotations" / "validation" / "ADE_0.png"))
    val = AdeSegmentation(root, "validation", train=False, scale=(2048, 512))
    image, label = val[0]
    assert label.shape == raw.shape and image.shape[-2:] == (512, 717)  # short side 512
    assert torch.equal(label, torch.from_numpy(np.where(raw == 0, 255, raw.astype(np.int64) - 1)))
    train = AdeSegmentation(root, "training", train=True, scale=(128, 32), crop_size=(40, 40))
    x, y = train[5]
    assert x.shape == (3, 40, 40) and y.shape == (40, 40)
    assert ((y >= 0) & (y < 150) | (y == 255)).all()
    x2, y2 = train[5]
    assert torch.equal(x, x2) and torch.equal(y, y2)  # the same key gives the same sample
    with pytest.raises(FileNotFoundError, match="images/test"):
        AdeSegmentation(root, "test", train=False)


def test_ade_loader_rejects_out_of_range_labels(tmp_path):
    root = _fabricated_ade(tmp_path, num_classes=20)
    with pytest.raises(ValueError, match="label values"):
        AdeSegmentation(root, "validation", train=False, num_classes=10)[0]


def test_large_scale_jitter_recomputes_boxes():
    rng = np.random.RandomState(3)
    masks = np.zeros((2, 60, 80), dtype=np.uint8)
    masks[0, 10:30, 5:25] = 1
    masks[1, 40:55, 60:78] = 1
    target = {"boxes": T.boxes_from_masks(masks), "labels": np.array([1, 2]), "masks": masks}
    image = np.zeros((60, 80, 3), dtype=np.uint8)
    for _ in range(5):
        out, t = T.large_scale_jitter(image, target, 64, (0.5, 2.0), rng)
        assert out.shape == (64, 64, 3) and t["masks"].shape[1:] == (64, 64)
        assert np.allclose(t["boxes"], T.boxes_from_masks(t["masks"]))
        assert len(t["labels"]) == len(t["boxes"]) == len(t["masks"])


def test_segmentation_meter_matches_hand_computation():
    meter = SegmentationMeter(3)
    label = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 255]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 0, 1]])
    meter.update(pred, label)
    m = meter.compute()
    # class 0: inter 1, union 3; class 1: inter 2, union 3; class 2: inter 1, union 2
    assert m["mIoU"] == pytest.approx(100 * (1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert m["aAcc"] == pytest.approx(100 * 4 / 6)
    assert m["mAcc"] == pytest.approx(100 * (1 / 2 + 1 + 1 / 2) / 3)


def test_slide_logits_of_a_pointwise_model_equal_the_whole_image():
    conv = torch.nn.Conv2d(3, 4, 1)
    x = torch.randn(1, 3, 37, 53)
    assert_close_by_rule(slide_logits(conv, x, 4, (16, 20), (11, 13)), conv(x), "same_math")


def test_seeded_sampler_resumes_mid_epoch():
    s = SeededBatchSampler(10, 3, seed=1)
    s.start(2, 0)
    full = list(s)
    s.start(2, 1)
    assert list(s) == full[1:] and len(full) == 3
    assert all(20 <= k < 30 for b in full for k in b)
