"""Dense models on tiny backbones: Mask R-CNN (FPN, ViTDet-style), UperNet; backbone init from a
classification checkpoint; optimizer groups and schedules. CPU, odd input sizes."""
from __future__ import annotations

import math

import pytest
import torch
from _tolerance import assert_close_by_rule

pytest.importorskip("torchvision")

from localmamba import create_model  # noqa: E402
from localmamba.dense import build_mask_rcnn, build_upernet, init_backbone  # noqa: E402
from localmamba.dense.builders import dense_param_groups, lr_multiplier, model_backbone  # noqa: E402
from localmamba.dense.config import load_dense_config  # noqa: E402
from localmamba.dense.layers import SimpleFeaturePyramid  # noqa: E402
from localmamba.train.config import ConfigError  # noqa: E402

SMALL_DET = dict(neck_channels=16, representation_size=32, min_size=64, max_size=96, anchor_sizes=(8, 16, 32, 64, 128),
                 box_batch_size_per_image=32, rpn_post_nms_top_n_train=64, mask_head_convs=1)


def _targets(sizes, num_classes):
    g = torch.Generator().manual_seed(1)
    out = []
    for h, w in sizes:
        x0, y0 = int(torch.randint(0, w // 2, (1,), generator=g)), int(torch.randint(0, h // 2, (1,), generator=g))
        x1, y1 = x0 + w // 3, y0 + h // 3
        masks = torch.zeros(1, h, w, dtype=torch.uint8)
        masks[0, y0:y1, x0:x1] = 1
        out.append({"boxes": torch.tensor([[x0, y0, x1, y1]], dtype=torch.float32),
                    "labels": torch.tensor([1 + len(out) % num_classes]), "masks": masks})
    return out


def _backbone_grad(model) -> float:
    body = model_backbone(model)
    first = body.patch_embed.proj.weight if hasattr(body.patch_embed, "proj") else body.patch_embed[0].weight
    assert first.grad is not None
    return float(first.grad.abs().sum())


@pytest.mark.parametrize("backbone,arch", [("local_vssm_test", "mask_rcnn_fpn"), ("local_vim_test", "mask_rcnn_vitdet")])
def test_mask_rcnn_train_step_and_inference_on_odd_sizes(backbone, arch):
    model = build_mask_rcnn(backbone, 3, arch=arch, **SMALL_DET)
    assert model.arch == arch
    sizes = [(67, 93), (75, 61)]  # not multiples of 32, of the windows or of the patch
    images = [torch.rand(3, h, w) for h, w in sizes]
    model.train()
    losses = model(images, _targets(sizes, 3))
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert _backbone_grad(model) > 0
    model.eval()
    with torch.no_grad():
        out = model(images)
    for o, (h, w) in zip(out, sizes):
        assert o["masks"].shape[1:] == (1, h, w) and o["boxes"].shape[1] == 4
        assert len(o["labels"]) == len(o["scores"]) == len(o["boxes"])


def test_vitdet_heads_follow_the_release():
    from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead

    from localmamba.dense.layers import LayerNorm2d

    model = build_mask_rcnn("local_vim_test", 2, **SMALL_DET)
    assert model.arch == "mask_rcnn_vitdet"
    assert isinstance(model.roi_heads.box_head, FastRCNNConvFCHead)
    assert sum(isinstance(m, LayerNorm2d) for m in model.roi_heads.box_head.modules()) == 4
    assert len(model.rpn.head.conv) == 2  # two 3x3 convs
    assert model_backbone(model).out_indices == (1,)  # the last layer (depth 2)
    assert model.roi_heads.box_roi_pool.sampling_ratio == 0


def test_simple_feature_pyramid_strides():
    fpn = SimpleFeaturePyramid(32, 8)
    maps = fpn(torch.randn(2, 32, 5, 7))
    assert [tuple(m.shape[-2:]) for m in maps.values()] == [(20, 28), (10, 14), (5, 7), (2, 3), (1, 2)]
    assert all(m.shape[1] == 8 for m in maps.values())


@pytest.mark.parametrize("backbone", ["local_vssm_test", "local_vim_test"])
def test_upernet_train_step_on_odd_sizes(backbone):
    model = build_upernet(backbone, 5, channels=16, aux_channels=8)
    x = torch.randn(2, 3, 45, 71)
    labels = torch.randint(0, 5, (2, 45, 71))
    labels[:, :3] = 255
    losses = model(x, labels)
    assert set(losses) == {"loss_seg", "loss_aux"} and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert _backbone_grad(model) > 0
    model.eval()
    assert model(x).shape == (2, 5, 45, 71)


def test_segmentation_loss_averages_over_all_pixels_like_mmseg():
    from localmamba.dense.segmentation import segmentation_loss

    logits = torch.randn(1, 3, 4, 4)
    labels = torch.randint(0, 3, (1, 4, 4))
    labels[0, :2] = 255
    per_pixel = torch.nn.functional.cross_entropy(logits, labels, ignore_index=255, reduction="none")
    assert_close_by_rule(segmentation_loss(logits, labels), per_pixel.sum() / 16, "same_math")
    assert_close_by_rule(segmentation_loss(logits, labels, average_non_ignored=True), per_pixel.sum() / 8, "same_math")


def test_segmentation_class_weight_scales_each_pixel_by_its_label():
    from localmamba.dense.segmentation import segmentation_loss

    torch.manual_seed(3)
    logits = torch.randn(2, 3, 5, 7)
    labels = torch.randint(0, 3, (2, 5, 7))
    labels[0, :2] = 255
    weight = torch.tensor([0.25, 1.0, 3.0])
    per_pixel = torch.nn.functional.cross_entropy(logits, labels, ignore_index=255, reduction="none")
    labelled = labels != 255
    by_label = torch.where(labelled, weight[labels.clamp(max=2)], torch.zeros(()))
    assert_close_by_rule(segmentation_loss(logits, labels, class_weight=weight), (per_pixel * by_label).sum() / 70,
                         "same_math")
    assert_close_by_rule(segmentation_loss(logits, labels, average_non_ignored=True, class_weight=weight),
                         (per_pixel * by_label).sum() / by_label.sum(), "same_math")
    # the model carries the weights into both heads' losses
    model = build_upernet("local_vssm_test", 3, channels=8, aux_channels=8, class_weight=[0.0, 0.0, 1.0])
    x = torch.randn(2, 3, 32, 32)
    only_bg = torch.zeros(2, 32, 32, dtype=torch.long)
    assert all(v.item() == 0.0 for v in model(x, only_bg).values())
    assert all(v.item() > 0.0 for v in model(x, only_bg + 2).values())
    with pytest.raises(ValueError, match="class_weight"):
        build_upernet("local_vssm_test", 3, channels=8, aux_channels=8, class_weight=[1.0, 1.0])
    with pytest.raises(ConfigError, match="model.class_weight"):
        load_dense_config("segmentation/embedded_local_vssm", ["model.class_weight=[1, -1]"])


@pytest.mark.parametrize("name", ["local_vssm_test", "local_vim_test"])
def test_backbone_init_is_strict_and_reported(name, tmp_path):
    classifier = create_model(name)
    path = tmp_path / "cls.pth"
    torch.save({"model": classifier.state_dict()}, path)
    model = build_upernet(name, 4, channels=8, aux_channels=8)
    report = init_backbone(model.backbone, path)
    body_sd = model.backbone.state_dict()
    for key, value in classifier.state_dict().items():
        if key in body_sd:
            assert torch.equal(body_sd[key], value), key
    assert report.fresh and all(k.startswith("outnorm") for k in report.fresh)
    assert report.dropped_classifier and report.loaded == len(body_sd) - len(report.fresh)
    assert "loaded" in str(report)
    other = "local_vim_test" if name == "local_vssm_test" else "local_vssm_test"
    with pytest.raises(ValueError, match="does not fit"):
        init_backbone(model.backbone, create_model(other).state_dict())
    extra = dict(classifier.state_dict(), **{"stray.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="stray.weight"):
        init_backbone(model.backbone, extra)


def test_layer_decay_groups_and_schedules():
    cfg = load_dense_config(None, ["task=segmentation", "model.backbone=local_vim_test", "optim.layer_decay=0.5"])
    model = build_upernet("local_vim_test", 3, channels=8, aux_channels=8)
    groups = dense_param_groups(model, cfg)
    scales = sorted({g["lr_scale"] for g in groups})
    assert scales == [0.125, 0.25, 0.5, 1.0]  # stem 0.5^3, layers 0.5^2 / 0.5^1, heads 1
    ids = {id(p): g for g in groups for p in g["params"]}
    assert ids[id(model.backbone.pos_embed)]["lr_scale"] == 0.125 and ids[id(model.backbone.pos_embed)]["weight_decay"] == 0
    assert ids[id(model.decode_head.classifier.weight)]["lr_scale"] == 1.0
    step = dict(iters=100, warmup_iters=10, warmup_factor=0.001, policy="step", milestones=[50, 80], gamma=0.1,
                power=1.0, min_lr=0.0)
    assert math.isclose(lr_multiplier(0, step, 1.0), 0.001)
    assert math.isclose(lr_multiplier(5, step, 1.0), 0.001 + 0.999 * 0.5)
    assert lr_multiplier(49, step, 1.0) == 1.0 and math.isclose(lr_multiplier(80, step, 1.0), 0.01)
    poly = dict(step, policy="poly", warmup_iters=0, min_lr=0.1)
    assert math.isclose(lr_multiplier(50, poly, 1.0), 0.9 * 0.5 + 0.1) and math.isclose(lr_multiplier(100, poly, 1.0), 0.1)


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="model.neck_channels"):
        load_dense_config(None, ["model.neck_channels=0"])
    with pytest.raises(ConfigError, match="data.root"):
        load_dense_config(None, ["data.dataset=coco"])
    with pytest.raises(ConfigError, match="segmentation dataset"):
        load_dense_config(None, ["data.dataset=ade20k", "data.root=/x"])
    with pytest.raises(ConfigError, match="did you mean"):
        load_dense_config(None, ["optim.lrr=1"])
    with pytest.raises(ValueError, match="num_classes"):
        build_mask_rcnn("local_vssm_test", 0)
