"""A model built for one channel (in_chans=1) is fed one channel everywhere zoo_core
reads images for it: fine-tuning (every strategy, auto's probes included), eval and
predict. Before, training fed RGB and failed inside torch ("expected input ... to have
1 channels, but got 3")."""

from __future__ import annotations

import pytest
import torch

import zoo_core

pytestmark = pytest.mark.usefixtures("one_thread")
LABELS = ["5", "6", "7", "8", "9"]


@pytest.fixture(scope="module")
def gray_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gray") / "gray1"
    model = zoo_core.build_model("zoonet_s", 5, "finetune", in_chans=1, label_names=LABELS)
    zoo_core.save_pretrained(model, folder)
    return folder


@pytest.mark.parametrize("strategy", ["finetune", "linear_probe", "partial:1", "auto"])
def test_a_one_channel_model_fine_tunes(gray_model, digits, strategy):
    net, res = zoo_core.finetune(str(gray_model), digits, strategy=strategy, epochs=1,
                                 progress=False, verbose=False)
    assert res.history and 0.0 <= res.best_val_acc <= 1.0
    first = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.in_channels == 1


def test_transforms_give_the_model_its_channels(gray_model):
    from PIL import Image

    from zoo_core.data._data import make_transforms

    net = zoo_core.build_model(str(gray_model))
    train_tf, eval_tf = make_transforms(net, augment=True)
    image = Image.new("RGB", (40, 40), (200, 10, 10))
    assert eval_tf(image).shape[0] == 1 and train_tf(image).shape[0] == 1
