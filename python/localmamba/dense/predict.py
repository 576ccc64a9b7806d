"""`predict`: run a trained detector / segmenter on image files and write PNG overlays (boxes,
class names, scores and masks; or the class map blended over the image)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np
import torch
from PIL import Image

from .transforms import rescale_keep_ratio

__all__ = ["predict_detection", "predict_segmentation", "palette"]


def palette(n: int) -> List[tuple]:
    """n distinct RGB colours (golden-angle hues), deterministic."""
    import colorsys

    return [tuple(int(255 * c) for c in colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.75, 0.95)) for i in range(n)]


def _read(path) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {str(path)!r} not found")
    with Image.open(path) as im:
        return np.array(im.convert("RGB"))  # writable: torch.from_numpy warns on read-only arrays


@torch.no_grad()
def predict_detection(model, image_path, out_path, class_names: Sequence[str], score_threshold: float = 0.3,
                      device="cpu") -> Dict[str, Any]:
    """Detects objects in one image and writes the overlay PNG; returns the kept detections."""
    from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

    image = _read(image_path)
    x = torch.from_numpy(image).permute(2, 0, 1).float().div(255)
    model.eval()
    out = {k: v.cpu() for k, v in model([x.to(device)])[0].items()}
    keep = out["scores"] >= score_threshold
    boxes, labels, scores = out["boxes"][keep], out["labels"][keep], out["scores"][keep]
    colours = palette(len(class_names))
    canvas = torch.from_numpy(image).permute(2, 0, 1).contiguous()
    if "masks" in out and keep.any():
        masks = out["masks"][keep][:, 0] > 0.5
        canvas = draw_segmentation_masks(canvas, masks, alpha=0.45, colors=[colours[int(l) - 1] for l in labels])
    texts = [f"{class_names[int(l) - 1]} {float(s):.2f}" for l, s in zip(labels, scores)]
    if len(boxes):
        canvas = draw_bounding_boxes(canvas, boxes, labels=texts, colors=[colours[int(l) - 1] for l in labels],
                                     width=2)
    _save(canvas, out_path)
    return {"image": str(image_path), "output": str(out_path),
            "detections": [{"class": t.rsplit(" ", 1)[0], "score": round(float(s), 4),
                            "box": [round(float(v), 2) for v in b]} for t, s, b in zip(texts, scores, boxes)]}


@torch.no_grad()
def predict_segmentation(model, image_path, out_path, class_names: Sequence[str], cfg: Dict[str, Any],
                         device="cpu") -> Dict[str, Any]:
    """Segments one image (test-time rescale as in evaluation) and writes the blended class map."""
    from torchvision.utils import draw_segmentation_masks

    from .evaluation import slide_logits

    image = _read(image_path)
    h, w = image.shape[:2]
    d = cfg["data"]
    rh, rw = rescale_keep_ratio(h, w, d["scale"])
    resized = np.array(Image.fromarray(image).resize((rw, rh), Image.BILINEAR))  # a writable copy for from_numpy
    x = torch.from_numpy(resized).permute(2, 0, 1).float().div(255)
    x = ((x - torch.tensor(d["mean"]).view(3, 1, 1)) / torch.tensor(d["std"]).view(3, 1, 1)).unsqueeze(0).to(device)
    model.eval()
    e = cfg["eval"]
    logits = slide_logits(model, x, len(class_names), e["crop"], e["stride"]) if e["mode"] == "slide" else model(x)
    logits = torch.nn.functional.interpolate(logits.float().cpu(), size=(h, w), mode="bilinear", align_corners=False)
    pred = logits.argmax(1)[0]
    present = pred.unique().tolist()
    masks = torch.stack([pred == c for c in present])
    colours = palette(len(class_names))
    canvas = draw_segmentation_masks(torch.from_numpy(image).permute(2, 0, 1).contiguous(), masks, alpha=0.55,
                                     colors=[colours[c] for c in present])
    _save(canvas, out_path)
    total = float(pred.numel())
    return {"image": str(image_path), "output": str(out_path),
            "classes": {class_names[c]: round(float((pred == c).sum()) / total, 4) for c in present}}


def _save(canvas: torch.Tensor, out_path) -> None:
    from ..train.checkpoint import atomic_write_bytes
    import io

    buf = io.BytesIO()
    Image.fromarray(canvas.permute(1, 2, 0).numpy()).save(buf, format="PNG")
    atomic_write_bytes(out_path, buf.getvalue())
