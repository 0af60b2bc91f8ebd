"""augment.py promises torchvision's random erasing, draw for draw for one image and in
distribution for whole batches, and torchvision's crop, flip and erase on whole batches, on the
CPU and on a CUDA GPU (training draws and applies them on the device the images are on)."""
import warnings

import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF

from augment import RandomErasing, crop_flip, erase, sample_boxes, sample_crops
from conftest import DEVICES

SETTINGS = [  # the report's settings, a per-channel value, and ones where no rectangle ever fits
    dict(p=0.5), dict(p=1.0), dict(p=0.8), dict(p=1.0, scale=(0.17, 0.5)), dict(p=1.0, scale=(0.33, 0.67)),
    dict(p=1.0, ratio=(0.9, 1.1)), dict(p=1.0, ratio=(0.2, 5.0)), dict(p=0.0),
    dict(p=1.0, value=(0.5, -1.0, 2.0)), dict(p=1.0, value=3), dict(p=0.7, scale=(0.1, 0.1), ratio=(1.0, 1.0)),
    dict(p=1.0, scale=(0.9, 1.0), ratio=(3.0, 3.3)), dict(p=1.0, scale=(1.0, 1.0)),
]


@pytest.mark.parametrize('kwargs, shape', [  # with p 0, nothing is ever erased: the handout's exercise is not needed
    pytest.param(kwargs, shape, marks=pytest.mark.exercise('sample_box') if kwargs.get('p', 0.5) else ())
    for kwargs in SETTINGS for shape in [(3, 32, 32), (3, 17, 40), (1, 8, 8)]
    if not (isinstance(kwargs.get('value'), tuple) and shape[0] != 3)])
def test_random_erasing_equals_torchvision_bit_for_bit(kwargs, shape):
    ours, theirs = RandomErasing(**kwargs), T.RandomErasing(**kwargs)
    for seed in range(60):
        img = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
        torch.manual_seed(seed)
        expected, rng_after = theirs(img), torch.rand(4)
        torch.manual_seed(seed)
        got = ours(img)
        assert torch.equal(got, expected), (kwargs, shape, seed)
        assert torch.equal(torch.rand(4), rng_after)  # and the same number of draws from the generator


@pytest.mark.exercise('sample_box')
def test_no_fit_leaves_the_image_as_it_was():
    img = torch.randn(3, 32, 32)
    torch.manual_seed(0)
    assert torch.equal(RandomErasing(p=1.0, scale=(0.9, 1.0), ratio=(3.0, 3.3))(img), img)


@pytest.mark.exercise('sample_box')
def test_the_input_image_is_not_modified():
    img = torch.randn(3, 32, 32)
    copy = img.clone()
    RandomErasing(p=1.0)(img)
    assert torch.equal(img, copy)


@pytest.mark.parametrize('kwargs', [dict(p=1.5), dict(p=-0.1), dict(scale=(-0.1, 0.5)), dict(scale=(0.5, 1.5)),
                                    dict(value='black'), dict(value=None), dict(scale=0.5), dict(ratio=3.0)])
def test_bad_arguments_raise_what_torchvision_raises(kwargs):
    with pytest.raises((TypeError, ValueError)) as theirs:
        T.RandomErasing(**kwargs)
    with pytest.raises(theirs.type):
        RandomErasing(**kwargs)


def test_unordered_ranges_warn_like_torchvision():
    for kwargs in (dict(scale=(0.3, 0.1)), dict(ratio=(3.3, 0.3))):
        with pytest.warns(UserWarning):
            RandomErasing(**kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        RandomErasing()


def test_a_value_with_the_wrong_number_of_channels_is_refused():
    with pytest.raises(ValueError):
        RandomErasing(p=1.0, value=(1.0, 2.0))(torch.randn(3, 8, 8))


@pytest.mark.parametrize('device', DEVICES)
def test_batch_erase_equals_torchvision_erase_for_each_image(device):
    g = torch.Generator(device=device).manual_seed(0)
    images = torch.randn(64, 3, 32, 32)
    i, j, h, w = (t.cpu() for t in sample_boxes(64, 32, 32, 0.8, (0.02, 0.33), (0.3, 3.3), g))
    for value in (0.0, (0.5, -1.0, 2.0)):
        out = erase(images.to(device), i.to(device), j.to(device), h.to(device), w.to(device), value).cpu()
        for k in range(64):
            v = torch.tensor(value, dtype=torch.float32).reshape(-1, 1, 1)
            expected = TF.erase(images[k], int(i[k]), int(j[k]), int(h[k]), int(w[k]), v)
            assert torch.equal(out[k], expected)
    assert (h == 0).any() and (h > 0).any()  # both kinds of image were checked


def torchvision_draws(n, p, scale, ratio, height=32, width=32):
    """n draws of torchvision's coin and rectangle, as (i, j, h, w) with h = w = 0 for no erasing."""
    torch.manual_seed(0)
    img, draws = torch.zeros(1, height, width), []
    for _ in range(n):
        if torch.rand(1) < p:
            i, j, h, w, v = T.RandomErasing.get_params(img, scale=scale, ratio=ratio, value=[0.0])
            draws.append((i, j, h, w) if v is not img else (0, 0, 0, 0))  # v is img: nothing fitted
        else:
            draws.append((0, 0, 0, 0))
    return torch.tensor(draws).T


def total_variation(a, b):
    """Half the L1 distance between the empirical distributions of two integer samples."""
    size = int(max(a.max(), b.max())) + 1
    pa, pb = torch.bincount(a, minlength=size) / len(a), torch.bincount(b, minlength=size) / len(b)
    return 0.5 * (pa - pb).abs().sum().item()


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('p, scale, ratio', [(0.5, (0.02, 0.33), (0.3, 3.3)), (1.0, (0.33, 0.67), (0.3, 3.3)),
                                             (0.8, (0.02, 0.33), (0.2, 5.0)), (1.0, (0.5, 0.9), (0.9, 1.1)),
                                             (1.0, (0.02, 0.33), (1.0, 3.3))])  # the last: tall boxes only
def test_batch_boxes_follow_torchvisions_distribution(p, scale, ratio, device):
    n = 20000
    ours = torch.stack(sample_boxes(n, 32, 32, p, scale, ratio, torch.Generator(device=device).manual_seed(1))).cpu()
    theirs = torchvision_draws(n, p, scale, ratio)
    erased_ours, erased_theirs = ours[2] > 0, theirs[2] > 0
    assert erased_ours.float().mean().item() == pytest.approx(erased_theirs.float().mean().item(), abs=0.015)
    # Among erased images: height, width, top and left, each within sampling noise of torchvision's.
    for name, a, b in zip('ijhw', ours[:, erased_ours], theirs[:, erased_theirs]):
        assert total_variation(a, b) < 0.04, name
    area = lambda d: (d[2] * d[3]).float()[d[2] > 0] / 1024
    assert area(ours).mean().item() == pytest.approx(area(theirs).mean().item(), rel=0.02)
    # and the check is sharp enough to see a real difference: a narrower scale range is far off
    other = torchvision_draws(n, p, (scale[0], (scale[0] + scale[1]) / 2), ratio)
    assert total_variation(ours[2][erased_ours], other[2][other[2] > 0]) > 0.1


@pytest.mark.exercise('crop_flip')
@pytest.mark.parametrize('device', DEVICES)
def test_crop_flip_equals_torchvision_pad_crop_and_flip(device):
    g = torch.Generator(device=device).manual_seed(0)
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    top, left, flip = sample_crops(64, 4, g)
    out = crop_flip(images.to(device), top, left, flip).cpu()
    top, left, flip = top.cpu(), left.cpu(), flip.cpu()
    for k in range(64):
        expected = TF.crop(TF.pad(images[k], 4), int(top[k]), int(left[k]), 32, 32)  # pads with zeros
        assert torch.equal(out[k], TF.hflip(expected) if flip[k] else expected)
    assert flip.any() and not flip.all()


@pytest.mark.parametrize('device', DEVICES)
def test_crop_offsets_and_flips_are_uniform(device):
    top, left, flip = (t.cpu() for t in sample_crops(90000, 4, torch.Generator(device=device).manual_seed(0)))
    for offsets in (top, left):  # 9 offsets, 0..8, as RandomCrop(32, padding=4) draws them
        torch.testing.assert_close(torch.bincount(offsets, minlength=9) / 90000, torch.full((9,), 1 / 9), atol=0.005, rtol=0)
    assert flip.float().mean().item() == pytest.approx(0.5, abs=0.005)


# Invariants of the batched sampler, each failing with a message that says what is wrong.
INVARIANT_SETTINGS = [(0.5, (0.02, 0.33), (0.3, 3.3)), (1.0, (0.33, 0.67), (0.3, 3.3)), (1.0, (0.02, 0.33), (1.0, 3.3)),
                      (0.8, (0.9, 1.0), (3.0, 3.3)), (1.0, (1.0, 1.0), (1.0, 1.0))]


@pytest.mark.parametrize('p, scale, ratio', INVARIANT_SETTINGS)
def test_every_box_lies_inside_the_image(p, scale, ratio):
    i, j, h, w = sample_boxes(5000, 32, 24, p, scale, ratio, torch.Generator().manual_seed(0))
    outside = (i < 0) | (j < 0) | (i + h > 32) | (j + w > 24)
    if outside.any():
        k = int(outside.nonzero()[0])
        pytest.fail(f'{int(outside.sum())} of 5000 boxes leave the 32x24 image, '
                    f'e.g. top {int(i[k])}, left {int(j[k])}, height {int(h[k])}, width {int(w[k])}')


@pytest.mark.parametrize('p, scale, ratio', INVARIANT_SETTINGS)
def test_a_box_is_empty_exactly_when_its_image_is_left_alone(p, scale, ratio):
    """h = w = 0 is how sample_boxes says 'not erased': never one without the other, and an
    image with a box gets exactly h x w pixels of each channel filled."""
    i, j, h, w = sample_boxes(2000, 32, 32, p, scale, ratio, torch.Generator().manual_seed(0))
    assert torch.equal(h == 0, w == 0), f'{int(((h == 0) != (w == 0)).sum())} boxes have one side 0 and not the other'
    images = torch.ones(2000, 3, 32, 32)
    filled = (erase(images, i, j, h, w) == 0).sum(dim=(1, 2, 3))
    assert torch.equal(filled, 3 * h * w), 'erase() filled other pixels than the boxes say'


def test_p_0_erases_nothing_and_p_1_erases_every_image_whose_box_fits():
    g = torch.Generator().manual_seed(0)
    _, _, h, _ = sample_boxes(1000, 32, 32, 0.0, (0.02, 0.33), (0.3, 3.3), g)
    assert (h == 0).all(), f'p = 0, yet {int((h > 0).sum())} of 1000 images were given a box'
    # a tenth of the image, square: h = w = round(sqrt(102.4)) = 10, which always fits
    _, _, h, w = sample_boxes(1000, 32, 32, 1.0, (0.1, 0.1), (1.0, 1.0), g)
    assert (h == 10).all() and (w == 10).all(), f'p = 1: box sides {sorted(set(h.tolist()))}, expected all 10'
    # half the image at ratio 3: 3 sqrt(512 / 3) = 39 rows, taller than the image; no try ever fits
    _, _, h, _ = sample_boxes(1000, 32, 32, 1.0, (0.5, 0.5), (3.0, 3.0), g)
    assert (h == 0).all(), 'a box that cannot fit must leave the image alone'


@pytest.mark.exercise('sample_box')
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16, torch.bfloat16, torch.uint8])
def test_erasing_keeps_dtype_and_shape(dtype):
    images = torch.ones(8, 3, 32, 32, dtype=dtype)
    boxes = sample_boxes(8, 32, 32, 1.0, (0.02, 0.33), (0.3, 3.3), torch.Generator().manual_seed(0))
    for value in (0, (0, 0, 0)):
        out = erase(images, *boxes, value)
        assert (out.dtype, out.shape) == (dtype, images.shape), f'erase() gave {out.dtype} {tuple(out.shape)}'
    one = RandomErasing(p=1.0)(images[0])
    assert (one.dtype, one.shape) == (dtype, images[0].shape), f'RandomErasing gave {one.dtype} {tuple(one.shape)}'


def test_the_ratio_is_height_over_width():
    """r = h / w: a ratio range above 1 gives boxes taller than wide, below 1 wider than tall."""
    g = torch.Generator().manual_seed(0)
    _, _, h, w = sample_boxes(2000, 32, 32, 1.0, (0.05, 0.2), (2.0, 3.3), g)
    assert (h >= w).all(), f'ratio (2.0, 3.3): {int((h < w).sum())} of 2000 boxes are wider than tall'
    _, _, h, w = sample_boxes(2000, 32, 32, 1.0, (0.05, 0.2), (0.3, 0.5), g)
    assert (h <= w).all(), f'ratio (0.3, 0.5): {int((h > w).sum())} of 2000 boxes are taller than wide'
