"""multi_scale_logits and SegmentationNet's eval_scales / eval_flip."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dcsm_lightning.models import SegmentationNet
from dcsm_lightning.models.test_time import multi_scale_logits
from dcsm_lightning.segmentation.network import NetworkSegmentation
from dcsm_lightning.segmentation.network_maps import label_maps


def _net():
    torch.manual_seed(0)
    return SegmentationNet(num_classes=3, backbone="vgg_small", dilation=2).eval()


def _image(seed=0):
    return torch.randn(2, 3, 32, 40, generator=torch.Generator().manual_seed(seed))


def test_one_plain_scale_is_the_network_itself():
    net, image = _net(), _image()
    with torch.no_grad():
        assert torch.equal(multi_scale_logits(net, image), net(image))


def test_the_softmax_is_the_average_of_the_copies_computed_by_hand():
    net, image = _net(), _image()
    with torch.no_grad():
        out = multi_scale_logits(net, image, scales=[1.0, 1.5], flip=True)
        big = F.interpolate(image, size=(48, 60), mode="bilinear", align_corners=False)
        copies = [
            net(image),
            net(image.flip(-1)).flip(-1),
            F.interpolate(net(big), size=(32, 40), mode="bilinear", align_corners=False),
            F.interpolate(net(big.flip(-1)), size=(32, 40), mode="bilinear").flip(-1),
        ]
        expected = torch.stack([c.softmax(1) for c in copies]).mean(0)
    assert out.shape == (2, 4, 32, 40)
    torch.testing.assert_close(out.softmax(1), expected, atol=1e-6, rtol=1e-5)


def test_flip_makes_the_result_mirror_symmetric():
    net, image = _net(), _image()
    with torch.no_grad():
        out = multi_scale_logits(net, image, scales=[1.0, 1.25], flip=True)
        mirrored = multi_scale_logits(net, image.flip(-1), scales=[1.0, 1.25], flip=True)
    torch.testing.assert_close(mirrored.flip(-1), out, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("scales", [[], [1.0, 0.0], [-1.0]])
def test_bad_scales_are_refused(scales):
    with pytest.raises(ValueError, match="eval_scales must be a non-empty list of ratios > 0"):
        multi_scale_logits(_net(), _image(), scales=scales)
    with pytest.raises(ValueError, match="eval_scales"):
        SegmentationNet(num_classes=3, backbone="vgg_small", eval_scales=scales or [0.0])


def test_segmentation_net_segments_with_its_eval_scales_and_keeps_the_plain_forward():
    torch.manual_seed(0)
    model = SegmentationNet(
        num_classes=3, backbone="vgg_small", dilation=2, eval_scales=[1.0, 1.5], eval_flip=True,
        segmentation=NetworkSegmentation(),
    ).eval()
    image = _image()
    batch = {
        "image": image,
        "rgb": torch.zeros(2, 32, 40, 3, dtype=torch.uint8),
        "labels": torch.ones(2, 3),
        "valid": torch.ones(2, 32, 40, dtype=torch.bool),
        "id": ["a", "b"],
    }
    with torch.no_grad():
        expected = multi_scale_logits(model, image, [1.0, 1.5], flip=True)
        plain = model(image)
    out = model.segmentation.segment(model, model.segmentation.batch_adapter(batch))
    assert torch.equal(out.masks["segnet"], expected.argmax(1))
    torch.testing.assert_close(out.maps["segnet"], label_maps(expected, batch["valid"])[2])
    assert not torch.allclose(out.maps["segnet"], label_maps(plain, batch["valid"])[2])
    with torch.no_grad():
        assert torch.equal(model(image), plain)  # forward (and so the loss) stays plain
