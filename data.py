"""CIFAR-10 as tensors, the training/validation split, and the statistics that normalise it.

Krizhevsky, "Learning Multiple Layers of Features from Tiny Images" (2009),
https://www.cs.toronto.edu/~kriz/cifar.html: 50,000 training and 10,000 test images,
32x32 RGB, 10 classes of exactly 5,000 and 1,000 images.

The report holds out 10,000 of the training images as a validation set and chooses every
setting by validation accuracy. The test set is looked at once, at the end of a run: a
setting picked by its test accuracy would make that test accuracy an optimistic guess.

    python data.py [--data-dir data] [--seed 0]    prints Table 1: images per class in each split
"""
import argparse
import os
import pickle
from typing import NamedTuple

from bookkeeping.download import ARCHIVE, DataError, fetch
from bookkeeping.environment import needs
needs('numpy', 'torch')  # a Python without them: one line that says which Python, and how to get them
import numpy as np
import torch

CLASSES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck')
TRAIN_BATCHES = ('data_batch_1', 'data_batch_2', 'data_batch_3', 'data_batch_4', 'data_batch_5')
TEST_BATCH = 'test_batch'
VAL_FRACTION = 0.2  # 1,000 of each class's 5,000 training images: 10,000 in all, as in the report


def load_cifar10(root, download=True):
    """Train images, train labels, test images, test labels: uint8 (N, 3, 32, 32) and int64 (N,).

    Reads root/cifar-10-batches-py/ itself rather than through torchvision's CIFAR10 class,
    so any copy in the official format works, not only the files with the official md5 sums.
    """
    folder = fetch(root, download)  # downloaded and unpacked if need be: once, whoever asks first
    train = [read_batch(os.path.join(folder, name)) for name in TRAIN_BATCHES]
    test_x, test_y = read_batch(os.path.join(folder, TEST_BATCH))
    return torch.cat([x for x, _ in train]), torch.cat([y for _, y in train]), test_x, test_y


def read_batch(path):
    """One batch file: a pickled dict with 'data', N rows of 3072 bytes (the R, G and B planes
    of a 32x32 image, row-major), and 'labels', N ints in 0-9. The official files are Python 2
    pickles whose keys load as bytes (b'data'); files written from Python 3 have str keys."""
    try:
        with open(path, 'rb') as f:
            # pickle runs whatever the file asks for: read only data sets you trust.
            batch = pickle.load(f, encoding='bytes')
        batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
        data, labels = np.asarray(batch['data']), torch.as_tensor(batch['labels'], dtype=torch.int64)
    except Exception as e:  # missing, truncated, not a pickle, or a pickle of something else
        raise DataError(f'{path} is not a CIFAR-10 batch file ({type(e).__name__}: {e}); unpack {ARCHIVE} again') from None
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise DataError(f'{path} is not a CIFAR-10 batch file (data {data.dtype} {data.shape}, {len(labels)} labels)')
    if len(labels) and (labels.min() < 0 or labels.max() >= len(CLASSES)):
        raise DataError(f'{path} has labels outside 0-{len(CLASSES) - 1}: not a CIFAR-10 batch file')
    return torch.from_numpy(data.copy()).view(-1, 3, 32, 32), labels


def rank_within_class(labels):
    """rank[i] = how many entries before i have the class of entry i: 0, 1, 2, ... per class."""
    rank = torch.empty_like(labels)
    for c in labels.unique():
        members = labels == c
        rank[members] = torch.arange(int(members.sum()))
    return rank


def balanced_split(labels, val_per_class=1000, seed=0):
    """(train_idx, val_idx): exactly val_per_class images of every class for validation, the
    rest for training. Both in one seeded random order, so the first 128 training indices are
    a random sample (report.py's Figure 1). A torch.Generator on the CPU gives the same split on every machine."""
    if (torch.bincount(labels, minlength=len(CLASSES)) <= val_per_class).any():
        raise ValueError(f'every class needs more than {val_per_class} images to keep {val_per_class} for validation')
    # BEGIN SOLUTION
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=generator)
    in_val = rank_within_class(labels[order]) < val_per_class  # the first val_per_class of each class
    train_idx, val_idx = order[~in_val], order[in_val]
    # Shuffle each once more: in `order`, a class's training images only begin after its
    # val_per_class-th image, so the first training indices would favour some classes.
    return train_idx[torch.randperm(len(train_idx), generator=generator)], \
        val_idx[torch.randperm(len(val_idx), generator=generator)]
    # END SOLUTION


def balanced_subset(idx, labels, n):
    """The first n entries of idx taken one class at a time in turn: every class gets n // 10
    images or one more. For quick runs on a CPU that still see every class equally often."""
    rank = rank_within_class(labels[idx])
    return idx[torch.sort(rank, stable=True).indices[:n]]


def channel_stats(images):
    """Per-channel mean and standard deviation of uint8 images, on the 0-1 scale.

    Computed on the training split, never the validation or test images, so that nothing
    about the held-out images leaks into training."""
    # BEGIN SOLUTION
    x = images.float().div_(255)
    return x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3))
    # END SOLUTION


def normalize(images, mean, std):
    """uint8 (B, 3, H, W) images to floats with each channel's training mean 0 and std 1, so no
    channel's scale dominates the first layer's gradients."""
    return (images.float().div(255) - mean.view(-1, 1, 1)) / std.view(-1, 1, 1)


def class_table(labels, train_idx, val_idx):
    """Table 1 of the report as markdown: images per class, count and share, in each split."""
    rows = ['| class | training | % | validation | % |', '|---|---:|---:|---:|---:|']
    train_counts = torch.bincount(labels[train_idx], minlength=len(CLASSES))
    val_counts = torch.bincount(labels[val_idx], minlength=len(CLASSES))
    for name, t, v in zip(CLASSES, train_counts.tolist(), val_counts.tolist()):
        rows.append(f'| {name} | {t} | {100 * t / len(train_idx):.1f} | {v} | {100 * v / len(val_idx):.1f} |')
    rows.append(f'| total | {len(train_idx)} | 100.0 | {len(val_idx)} | 100.0 |')
    return '\n'.join(rows)


def split_for(labels, seed):
    """The split every run uses: VAL_FRACTION of each class held out, seeded by the run's seed."""
    val_per_class = int(VAL_FRACTION * int(torch.bincount(labels).min()))
    return balanced_split(labels, val_per_class, seed)


class Split(NamedTuple):
    x: torch.Tensor    # (N, 3, 32, 32) uint8 images, on the run's device
    y: torch.Tensor    # (N,) int64 labels, on the run's device
    idx: torch.Tensor  # (N,) each image's index in CIFAR-10's training set (for test, its test set)


def load_splits(root, seed, device, train_subset=None, eval_subset=None):
    """A run's data: the training, validation and test splits, and the mean and std of the
    training split, all on `device`, moved there once. train_subset and eval_subset take a
    class-balanced part of the training split, and of the validation and test sets, for quick runs."""
    train_x, train_y, test_x, test_y = load_cifar10(root)
    train_idx, val_idx = split_for(train_y, seed)
    test_idx = torch.arange(len(test_y))
    for flag, n, available in (('--train-subset', train_subset, len(train_idx)),
                               ('--eval-subset', eval_subset, min(len(val_idx), len(test_idx)))):
        if n is not None and n > available:
            raise DataError(f'{flag} {n} is more than the {available} images there are')
    mean, std = channel_stats(train_x[train_idx])  # of the whole training split, subset or not
    if train_subset:
        train_idx = balanced_subset(train_idx, train_y, train_subset)
    if eval_subset:
        val_idx = balanced_subset(val_idx, train_y, eval_subset)
        test_idx = balanced_subset(test_idx, test_y, eval_subset)
    split = lambda x, y, idx: Split(x[idx].to(device), y[idx].to(device), idx)
    return (split(train_x, train_y, train_idx), split(train_x, train_y, val_idx), split(test_x, test_y, test_idx),
            mean.to(device), std.to(device))


def main():
    parser = argparse.ArgumentParser(description='Print Table 1: images per class in the training and validation splits.')
    parser.add_argument('--data-dir', default='data', help='folder holding cifar-10-batches-py (default: %(default)s)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the split (default: %(default)s)')
    args = parser.parse_args()
    try:
        _, train_y, _, _ = load_cifar10(args.data_dir)
    except DataError as e:
        parser.exit(1, f'data.py: error: {e}\n')
    print(class_table(train_y, *split_for(train_y, args.seed)))


if __name__ == '__main__':
    main()
