"""Metrics: COCO box / mask AP through pycocotools' COCOeval, and mIoU / mAcc / aAcc from a
confusion matrix; sliding-window inference for large images (mmseg's ``slide`` mode)."""
from __future__ import annotations

import contextlib
import io
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ._deps import require_pycocotools

__all__ = ["detections_to_coco", "coco_evaluate", "SegmentationMeter", "slide_logits", "COCO_STAT_NAMES"]

COCO_STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")
MASK_THRESHOLD = 0.5  # mmdet's mask_thr_binary


def _restore(output: Dict[str, torch.Tensor], target: Dict[str, Any]):
    """Maps a prediction on a resized (and padded) test image back to the original image."""
    boxes, masks = output["boxes"], output.get("masks")
    scale = float(target.get("scale", 1.0))
    h, w = target["orig_size"]
    if scale != 1.0:
        boxes = boxes / scale
        if masks is not None and len(masks):
            rh, rw = int(round(h * scale)), int(round(w * scale))
            masks = F.interpolate(masks[:, :, :rh, :rw].float(), size=(h, w), mode="bilinear", align_corners=False)
    boxes = boxes.clone()
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
    return boxes, masks


def detections_to_coco(output: Dict[str, torch.Tensor], target: Dict[str, Any], category_ids: Sequence[int],
                       with_masks: bool = True) -> List[Dict[str, Any]]:
    """One image's torchvision output -> COCO result records (xywh boxes, RLE masks at 0.5)."""
    _, _, mask_utils = require_pycocotools()
    boxes, masks = _restore(output, target)
    scores, labels = output["scores"].tolist(), output["labels"].tolist()
    records = []
    binary = None
    if with_masks and masks is not None and len(masks):
        binary = (masks[:, 0] > MASK_THRESHOLD).to(torch.uint8).cpu().numpy()
    for i, (box, score, label) in enumerate(zip(boxes.tolist(), scores, labels)):
        x0, y0, x1, y1 = box
        rec = {"image_id": int(target["image_id"]), "category_id": int(category_ids[label - 1]),
               "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(score)}
        if binary is not None:
            rle = mask_utils.encode(np.asfortranarray(binary[i]))
            rle["counts"] = rle["counts"].decode("ascii")
            rec["segmentation"] = rle
        records.append(rec)
    return records


def coco_evaluate(coco_gt, results: List[Dict[str, Any]], iou_types: Sequence[str] = ("bbox", "segm"),
                  image_ids: Optional[Sequence[int]] = None, verbose: bool = False) -> Dict[str, float]:
    """COCOeval summary as {"bbox_AP": ..., "bbox_AP50": ..., "segm_AP": ...} in percent. No
    detections at all gives zeros (pycocotools refuses an empty result list)."""
    _, COCOeval, _ = require_pycocotools()
    out: Dict[str, float] = {}
    for iou_type in iou_types:
        if not results:
            out.update({f"{iou_type}_{n}": 0.0 for n in COCO_STAT_NAMES})
            continue
        sink = io.StringIO()
        with contextlib.redirect_stdout(sink):
            dt = coco_gt.loadRes([dict(r) for r in results])
            ev = COCOeval(coco_gt, dt, iou_type)
            if image_ids is not None:
                ev.params.imgIds = list(image_ids)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        if verbose:
            print(f"[{iou_type}]\n{sink.getvalue()}", end="")
        for name, value in zip(COCO_STAT_NAMES, ev.stats[:6]):
            out[f"{iou_type}_{name}"] = 100.0 * max(0.0, float(value))  # -1: no objects of that size
    return out


class SegmentationMeter:
    """Accumulates a confusion matrix; mIoU / mAcc over classes present (NaN-free mean, as mmseg),
    aAcc over all labelled pixels; 255 is ignored."""

    def __init__(self, num_classes: int, ignore_index: int = 255):
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.float64)

    def update(self, pred: torch.Tensor, label: torch.Tensor) -> None:
        if pred.shape != label.shape:
            raise ValueError(f"prediction {tuple(pred.shape)} and label {tuple(label.shape)} shapes differ")
        keep = label != self.ignore_index
        idx = label[keep].long() * self.num_classes + pred[keep].long()
        self.confusion += torch.bincount(idx.cpu(), minlength=self.num_classes ** 2).view(
            self.num_classes, self.num_classes).double()

    def compute(self) -> Dict[str, Any]:
        c = self.confusion
        inter = c.diag()
        label_area, pred_area = c.sum(1), c.sum(0)
        union = label_area + pred_area - inter
        iou = inter / union  # NaN where a class is neither labelled nor predicted
        acc = inter / label_area
        return {"mIoU": 100.0 * float(np.nanmean(iou.numpy())) if torch.isfinite(iou).any() else 0.0,
                "mAcc": 100.0 * float(np.nanmean(acc.numpy())) if torch.isfinite(acc).any() else 0.0,
                "aAcc": 100.0 * float(inter.sum() / label_area.sum().clamp(min=1)),
                "IoU": [None if not np.isfinite(v) else round(100.0 * float(v), 3) for v in iou.tolist()]}


@torch.no_grad()
def slide_logits(model, image: torch.Tensor, num_classes: int, crop: Sequence[int], stride: Sequence[int]) -> torch.Tensor:
    """Logits of a (1, 3, H, W) image from overlapping crop windows (averaged where they overlap)."""
    _, _, h, w = image.shape
    ch, cw = min(crop[0], h), min(crop[1], w)
    sh, sw = stride
    rows = max(h - ch + sh - 1, 0) // sh + 1
    cols = max(w - cw + sw - 1, 0) // sw + 1
    logits = image.new_zeros((1, num_classes, h, w))
    count = image.new_zeros((1, 1, h, w))
    for r in range(rows):
        for c in range(cols):
            y1, x1 = min(r * sh, h - ch), min(c * sw, w - cw)
            logits[:, :, y1:y1 + ch, x1:x1 + cw] += model(image[:, :, y1:y1 + ch, x1:x1 + cw]).float()
            count[:, :, y1:y1 + ch, x1:x1 + cw] += 1
    return logits / count
