"""`localmamba predict`: top-5 classes with ImageNet names for 1000-class models."""
import json

import pytest
import torch

from localmamba.cli import main
from localmamba.models import create_model
from localmamba.models.imagenet_classes import IMAGENET_CLASSES

BACKEND = "native"


@pytest.fixture
def image(tmp_path):
    from PIL import Image

    path = tmp_path / "img.png"
    Image.fromarray((torch.rand(50, 70, 3) * 255).byte().numpy()).save(path)
    return str(path)


def test_imagenet_class_names():
    assert len(IMAGENET_CLASSES) == 1000 and IMAGENET_CLASSES[0] == "tench" and IMAGENET_CLASSES[999] == "toilet tissue"


def test_predict_top5_with_imagenet_names(tmp_path, image, capsys):
    model = create_model("local_vim_test", num_classes=1000, backend="reference")
    torch.save({"model": model.state_dict()}, tmp_path / "w.pth")
    rc = main(["predict", image, "--model", "local_vim_test", "--checkpoint", str(tmp_path / "w.pth"),
               "--num-classes", "1000", "--img-size", "32", "--backend", BACKEND, "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    top = out[0]["top"]
    assert len(top) == 5 and all(t["label"] == IMAGENET_CLASSES[t["index"]] for t in top)
    probs = [t["prob"] for t in top]
    assert probs == sorted(probs, reverse=True)
    # same as running the model by hand
    from localmamba.commands.predict import preprocess

    x = preprocess(image, 32, 0.875, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    with torch.no_grad():
        expected = model.eval().set_backend(BACKEND)(x[None]).softmax(-1)[0].topk(5).indices.tolist()
    assert [t["index"] for t in top] == expected


def test_predict_text_output_and_errors(tmp_path, image, capsys):
    model = create_model("local_vssm_test", backend="reference")
    torch.save(model.state_dict(), tmp_path / "w.pth")
    rc = main(["predict", image, "--model", "local_vssm_test", "--checkpoint", str(tmp_path / "w.pth"),
               "--img-size", "32", "--backend", BACKEND, "--topk", "3"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "1. class " in out and "3. class " in out and "4. " not in out
    assert main(["predict", image, "--model", "nope", "--checkpoint", "x.pth"]) == 2
    assert main(["predict", "missing.png", "--model", "local_vssm_test", "--checkpoint", "x.pth"]) == 2
    assert main(["predict", image, "--model", "local_vssm_test", "--checkpoint", str(tmp_path / "none.pth")]) == 2
