"""Data augmentation: random crop and flip, and random erasing.

Two forms of random erasing live here. `RandomErasing` transforms one image the way
torchvision.transforms.RandomErasing does, draw for draw: the tests check the two agree bit
for bit, which pins down exactly what "random erasing" means. Training does not use it:
a Python call per image is expected to cost more than the network's step on a GPU. Instead
`sample_boxes` draws every image's coin and rectangle for a whole batch at once, from the
same distribution, on the batch's device, and `erase` applies them with one masked write.
The crop and flip work the same way on whole batches.
"""
import math
from collections.abc import Sequence
import numbers
import warnings

import torch
import torch.nn.functional as F

TRIES = 10  # rectangles drawn before giving up on an image, as in Zhong et al. and torchvision


class RandomErasing:
    """Zhong, Zheng, Kang, Li and Yang, "Random Erasing Data Augmentation" (2017),
    https://arxiv.org/abs/1708.04896, with torchvision's semantics and argument checks.

    With probability p, erase one rectangle of a (C, H, W) image: its area is a fraction
    s ~ U(scale) of H * W and its aspect ratio r = h / w is log-uniform in `ratio`, so
    h = round(sqrt(s H W r)), w = round(sqrt(s H W / r)), placed uniformly where it fits.
    A draw that does not fit is drawn again, up to 10 times; then the image is left as is.
    Log-uniform makes r and 1/r equally likely: tall and wide boxes are symmetric.
    `value` fills the rectangle: a number, or one number per channel.
    """

    def __init__(self, p=0.5, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0.0):
        if isinstance(value, str):  # torchvision's value='random' (noise) is left out: the report fills with the mean
            raise ValueError(f"value should be a number or a sequence of numbers, got '{value}'")
        if not isinstance(value, (numbers.Number, tuple, list)):
            raise TypeError('value should be a number or a sequence of numbers, one per channel')
        if not isinstance(scale, Sequence) or not isinstance(ratio, Sequence):
            raise TypeError('scale and ratio should be sequences (min, max)')
        if scale[0] > scale[1] or ratio[0] > ratio[1]:
            warnings.warn('scale and ratio should be of the form (min, max)')
        if scale[0] < 0 or scale[1] > 1:
            raise ValueError('scale should be between 0 and 1')
        if p < 0 or p > 1:
            raise ValueError('the erasing probability p should be between 0 and 1')
        self.p, self.scale, self.ratio, self.value = p, scale, ratio, value

    def __call__(self, img):
        if torch.rand(1) < self.p:  # draw 1: the coin, always, before any other draw
            value = [float(v) for v in self.value] if isinstance(self.value, (tuple, list)) else [float(self.value)]
            if len(value) not in (1, img.shape[-3]):
                raise ValueError(f'value should have 1 or {img.shape[-3]} (the number of channels) entries')
            box = sample_box(img.shape[-2], img.shape[-1], self.scale, self.ratio)
            if box is not None:
                i, j, h, w = box
                img = img.clone()
                img[..., i:i + h, j:j + w] = torch.tensor(value)[:, None, None]
        return img

    def __repr__(self):
        return f'RandomErasing(p={self.p}, scale={self.scale}, ratio={self.ratio}, value={self.value})'


def sample_box(height, width, scale, ratio):
    """One rectangle (i, j, h, w) for an image of height x width, or None when 10 draws don't fit.

    Bit-for-bit equality with torchvision needs its draws from torch's global generator, in its
    order and of its kinds (torchvision/transforms/transforms.py, RandomErasing.get_params). After
    the coin (draw 1, in __call__), each try draws
        2. the area fraction s:    torch.empty(1).uniform_(scale[0], scale[1])
        3. log r, the log ratio:   torch.empty(1).uniform_(log(ratio[0]), log(ratio[1]))
    and a try whose box fits then draws its corner and stops:
        4. the top row i:          torch.randint(0, height - h + 1, (1,))
        5. the left column j:      torch.randint(0, width - w + 1, (1,))
    A try whose box does not fit draws nothing more; after 10 such tries, nothing is erased."""
    # BEGIN SOLUTION
    area = height * width
    log_ratio = torch.log(torch.tensor(ratio))
    for _ in range(TRIES):
        erase_area = area * torch.empty(1).uniform_(scale[0], scale[1]).item()                # draw 2
        aspect = torch.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1])).item()        # draw 3
        h = round(math.sqrt(erase_area * aspect))
        w = round(math.sqrt(erase_area / aspect))
        if h < height and w < width:
            i = torch.randint(0, height - h + 1, size=(1,)).item()                            # draw 4
            j = torch.randint(0, width - w + 1, size=(1,)).item()                             # draw 5
            return i, j, h, w
    return None
    # END SOLUTION


def sample_boxes(n, height, width, p, scale, ratio, generator):
    """For n images at once: the rectangle each one erases, as four (n,) int64 tensors
    (i, j, h, w), drawn from the same distribution as RandomErasing. An image whose coin says
    no, or whose 10 draws all miss, gets h = w = 0: an empty rectangle erases nothing.

    All 10 tries are drawn for every image and the first that fits is kept, which is what the
    sequential loop does, without a Python loop. Sizes are computed in float64 from float32
    draws, like torchvision's .item() arithmetic, so round() sees the same numbers."""
    device = generator.device
    log_ratio = torch.log(torch.tensor(ratio))
    frac = torch.empty(n, TRIES, device=device).uniform_(scale[0], scale[1], generator=generator)
    log_r = torch.empty(n, TRIES, device=device).uniform_(float(log_ratio[0]), float(log_ratio[1]), generator=generator)
    erase_area = height * width * frac.double()
    aspect = log_r.exp().double()
    h = torch.sqrt(erase_area * aspect).round().long()                          # (n, TRIES)
    w = torch.sqrt(erase_area / aspect).round().long()
    fits = (h < height) & (w < width)
    first = fits.int().argmax(dim=1, keepdim=True)                             # first try that fits
    h, w = h.gather(1, first).squeeze(1), w.gather(1, first).squeeze(1)        # (n,)
    erased = (torch.rand(n, device=device, generator=generator) < p) & fits.any(dim=1)
    h, w = h * erased, w * erased
    # Uniform top-left corner among the height - h + 1 rows (width - w + 1 columns) where it fits:
    # floor(u (height - h + 1)) with u uniform in [0, 1) is uniform on 0..height - h, as torchvision's
    # randint is, and takes a different range for each image in one call, which randint cannot.
    i = (torch.rand(n, device=device, generator=generator).double() * (height - h + 1)).long()
    j = (torch.rand(n, device=device, generator=generator).double() * (width - w + 1)).long()
    return i, j, h, w


def erase(images, i, j, h, w, value=0.0):
    """Fill rows i..i+h-1 and columns j..j+w-1 of each image of a (B, C, H, W) batch with
    `value` (a number, or one per channel): torchvision's F.erase for a whole batch."""
    rows = torch.arange(images.shape[-2], device=images.device)[None, :, None]   # (1, H, 1)
    cols = torch.arange(images.shape[-1], device=images.device)[None, None, :]   # (1, 1, W)
    i, j, h, w = (t[:, None, None] for t in (i, j, h, w))                       # (B, 1, 1)
    inside = (rows >= i) & (rows < i + h) & (cols >= j) & (cols < j + w)        # (B, H, W)
    if isinstance(value, numbers.Number):  # a plain number: no tensor to copy to the GPU each step
        return images.masked_fill(inside[:, None], value)
    fill = torch.tensor(value, dtype=images.dtype, device=images.device).reshape(-1, 1, 1)
    return torch.where(inside[:, None], fill, images)


def sample_crops(n, pad, generator):
    """For n images: top and left corners of a crop from the image padded by `pad` on every
    side (uniform in 0..2 pad, as torchvision's RandomCrop), and a coin for a horizontal flip."""
    device = generator.device
    top = torch.randint(0, 2 * pad + 1, (n,), device=device, generator=generator)
    left = torch.randint(0, 2 * pad + 1, (n,), device=device, generator=generator)
    flip = torch.rand(n, device=device, generator=generator) < 0.5
    return top, left, flip


def crop_flip(images, top, left, flip, pad=4):
    """The standard CIFAR augmentation on a (B, C, H, W) batch: zero-pad by `pad`, crop H x W
    at (top, left), mirror where `flip`. Shifts of up to 4 pixels and mirror images are still
    the same object, so the network sees new images of the right class for free.

    One gather does it: output pixel (b, c, y, x) is padded pixel (b, c, top_b + y, left_b + x),
    or (b, c, top_b + y, left_b + W - 1 - x) when flipped."""
    # BEGIN SOLUTION
    B, C, H, W = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))                                 # (B, C, H+2p, W+2p)
    rows = top[:, None] + torch.arange(H, device=images.device)                 # (B, H)
    cols = left[:, None] + torch.arange(W, device=images.device)                # (B, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    b = torch.arange(B, device=images.device)[:, None, None, None]
    c = torch.arange(C, device=images.device)[None, :, None, None]
    return padded[b, c, rows[:, None, :, None], cols[:, None, None, :]]
    # END SOLUTION
