"""data.py promises CIFAR-10 read from the official batch files, an exact class-balanced seeded
split, class-balanced subsets, and normalising statistics of the training split."""
import math
import pickle

import numpy as np
import pytest
import torch

import data
from bookkeeping import download
from conftest import PER_CLASS, make_cifar, write_batch
from data import DataError, balanced_split, balanced_subset, channel_stats, load_cifar10, normalize


def cifar_like_labels(seed=0):
    """50,000 labels, 5,000 of each class, in random order, as in CIFAR-10's training set."""
    return torch.arange(10).repeat(5000)[torch.randperm(50000, generator=torch.Generator().manual_seed(seed))]


@pytest.mark.parametrize('str_keys', [False, True])
def test_loads_what_was_written_with_either_key_form(tmp_path, str_keys):
    train_x, train_y, test_x, test_y = make_cifar(str(tmp_path), str_keys=str_keys)
    loaded = load_cifar10(str(tmp_path), download=False)
    assert [t.dtype for t in loaded] == [torch.uint8, torch.int64, torch.uint8, torch.int64]
    assert loaded[0].shape == (50 * PER_CLASS, 3, 32, 32) and loaded[2].shape == (10 * PER_CLASS, 3, 32, 32)
    for got, want in zip(loaded, (train_x, train_y, test_x, test_y)):
        assert torch.equal(got, want)


def test_pixel_layout_is_red_green_blue_planes_row_major(tmp_path):
    # One row built by hand as the CIFAR page describes it: 1024 red, 1024 green, 1024 blue bytes.
    row = np.concatenate([np.full(1024, 10), np.full(1024, 20), np.full(1024, 30)]).astype(np.uint8)
    row[1 * 32 + 2] = 99          # red, y=1, x=2
    row[2048 + 31 * 32 + 0] = 77  # blue, y=31, x=0
    folder = tmp_path / 'cifar-10-batches-py'
    folder.mkdir()
    for name in data.TRAIN_BATCHES + (data.TEST_BATCH,):
        with open(folder / name, 'wb') as f:
            pickle.dump({b'data': row[None].repeat(2, 0), b'labels': [3, 7]}, f, protocol=2)
    x, y, _, _ = load_cifar10(str(tmp_path), download=False)
    assert x[0, 0, 1, 2] == 99 and x[0, 2, 31, 0] == 77
    assert x[0, 1].unique().tolist() == [20] and y[:2].tolist() == [3, 7]


@pytest.mark.parametrize('damage', ['truncated', 'not a pickle', 'a list', 'cifar-100 keys', 'float data', 'bad label', 'missing'])
def test_damaged_batch_file_names_the_file(tmp_path, damage):
    make_cifar(str(tmp_path))
    path = tmp_path / download.FOLDER / 'data_batch_3'
    images = torch.zeros(4, 3, 32, 32, dtype=torch.uint8)
    if damage == 'truncated':
        path.write_bytes(path.read_bytes()[:5000])
    elif damage == 'not a pickle':
        path.write_text('hello')
    elif damage == 'a list':
        path.write_bytes(pickle.dumps([1, 2, 3]))
    elif damage == 'cifar-100 keys':
        path.write_bytes(pickle.dumps({b'data': images.reshape(4, -1).numpy(), b'fine_labels': [0] * 4}))
    elif damage == 'float data':
        path.write_bytes(pickle.dumps({b'data': np.zeros((4, 3072)), b'labels': [0] * 4}))
    elif damage == 'bad label':
        write_batch(path, images, torch.tensor([0, 1, 2, 10]))
    elif damage == 'missing':
        path.unlink()
    with pytest.raises(DataError, match='data_batch_3'):
        load_cifar10(str(tmp_path), download=False)


@pytest.mark.exercise('balanced_split')
def test_split_is_exactly_balanced_disjoint_and_complete():
    labels = cifar_like_labels()
    train_idx, val_idx = balanced_split(labels, val_per_class=1000, seed=0)
    assert torch.bincount(labels[train_idx]).tolist() == [4000] * 10
    assert torch.bincount(labels[val_idx]).tolist() == [1000] * 10
    assert torch.equal(torch.cat([train_idx, val_idx]).sort().values, torch.arange(50000))


@pytest.mark.exercise('balanced_split')
def test_split_is_seeded():
    labels = cifar_like_labels()
    a, b, c = (balanced_split(labels, 1000, seed) for seed in (0, 0, 1))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1].sort().values, c[1].sort().values)


@pytest.mark.exercise('balanced_split')
def test_split_order_is_random_so_the_first_batch_mixes_classes():
    labels = cifar_like_labels()
    train_idx, _ = balanced_split(labels, 1000, seed=0)
    assert len(labels[train_idx[:128]].unique()) == 10


def test_split_refuses_classes_too_small_to_split():
    with pytest.raises(ValueError):
        balanced_split(torch.arange(10).repeat(5), val_per_class=5)


@pytest.mark.exercise('balanced_split')
@pytest.mark.parametrize('n', [10, 64, 4000, 39999])
def test_subset_is_class_balanced_and_drawn_from_the_indices(n):
    labels = cifar_like_labels()
    train_idx, _ = balanced_split(labels, 1000, seed=0)
    subset = balanced_subset(train_idx, labels, n)
    counts = torch.bincount(labels[subset], minlength=10)
    assert len(subset) == n and counts.max() - counts.min() <= 1
    assert len(set(subset.tolist())) == n and set(subset.tolist()) <= set(train_idx.tolist())


@pytest.mark.exercise('channel_stats')
def test_channel_stats_match_numpy_in_float64():
    images = torch.randint(0, 256, (50, 3, 32, 32), dtype=torch.uint8)
    mean, std = channel_stats(images)
    x = images.numpy().astype(np.float64) / 255
    np.testing.assert_allclose(mean.numpy(), x.mean(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(std.numpy(), x.std(axis=(0, 2, 3), ddof=1), rtol=1e-5)
    z = normalize(images, mean, std)
    torch.testing.assert_close(z.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-5, rtol=0)


@pytest.mark.exercise('balanced_split')
def test_every_run_holds_out_a_fifth_of_each_class_as_in_the_report():
    """CIFAR-10's 5,000 training images of each class: 4,000 to train on and 1,000 to validate."""
    train_idx, val_idx = data.split_for(cifar_like_labels(), seed=0)
    assert (len(train_idx), len(val_idx)) == (40_000, 10_000)


@pytest.mark.exercise('channel_stats')
def test_channel_stats_by_hand():
    """Two one-pixel images: channel 0 is 0 and 255, so its values are 0 and 1 on the 0-1 scale,
    mean 1/2, and standard deviation sqrt(((1/2)^2 + (1/2)^2) / (2 - 1)) = 0.7071 with Bessel's
    correction (torch.std's default; without it, 0.5). Channels 1 and 2 are constant: std 0."""
    images = torch.tensor([[0, 51, 51], [255, 51, 51]], dtype=torch.uint8).view(2, 3, 1, 1)
    mean, std = channel_stats(images)
    torch.testing.assert_close(mean, torch.tensor([0.5, 0.2, 0.2]))
    torch.testing.assert_close(std, torch.tensor([math.sqrt(0.5), 0.0, 0.0]))


def test_table1_counts_and_shares_by_hand():
    """Three classes in a split of 10 training and 4 validation images: airplane 5 of 10 (50.0%)
    and 1 of 4 (25.0%), automobile 3 (30.0%) and 2 (50.0%), bird 2 (20.0%) and 1 (25.0%)."""
    labels = torch.tensor([0] * 6 + [1] * 5 + [2] * 3)
    train_idx = torch.tensor([0, 1, 2, 3, 4, 6, 7, 8, 12, 13])
    val_idx = torch.tensor([5, 9, 10, 11])
    table = data.class_table(labels, train_idx, val_idx).splitlines()
    assert '| airplane | 5 | 50.0 | 1 | 25.0 |' in table
    assert '| automobile | 3 | 30.0 | 2 | 50.0 |' in table
    assert '| bird | 2 | 20.0 | 1 | 25.0 |' in table
    assert '| cat | 0 | 0.0 | 0 | 0.0 |' in table
    assert table[-1] == '| total | 10 | 100.0 | 4 | 100.0 |'


@pytest.mark.exercise('balanced_split', 'channel_stats')
def test_normalisation_comes_from_the_training_split_alone(tmp_path):
    """The mean and std a run normalises with are those of its training split, computed here in
    float64: the validation images, which it is judged on, must not shape its inputs. They are
    made white here, so that any leak of theirs shows."""
    train_x, train_y, test_x, test_y = make_cifar(str(tmp_path))
    train_idx, val_idx = data.split_for(train_y, 0)
    train_x[val_idx] = 255
    folder = tmp_path / download.FOLDER
    for k, name in enumerate(data.TRAIN_BATCHES):
        write_batch(folder / name, train_x[50 * k:50 * (k + 1)], train_y[50 * k:50 * (k + 1)])
    _, _, _, mean, std = data.load_splits(str(tmp_path), 0, torch.device('cpu'), train_subset=50)
    pixels = train_x[train_idx].numpy().astype(np.float64) / 255
    np.testing.assert_allclose(mean.numpy(), pixels.mean(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(std.numpy(), pixels.std(axis=(0, 2, 3), ddof=1), rtol=1e-5)


@pytest.mark.exercise('balanced_split', 'channel_stats')
def test_splits_are_on_the_device_with_their_indices(cifar_root):
    train_split, val, test, _, _ = data.load_splits(cifar_root, 1, torch.device('cpu'), eval_subset=20)
    train_x, train_y, test_x, test_y = load_cifar10(cifar_root, download=False)
    train_idx, val_idx = data.split_for(train_y, 1)
    assert torch.equal(train_split.idx, train_idx) and torch.equal(train_split.x, train_x[train_idx])
    assert torch.equal(val.idx, balanced_subset(val_idx, train_y, 20)) and torch.equal(val.y, train_y[val.idx])
    assert torch.equal(test.idx, balanced_subset(torch.arange(len(test_y)), test_y, 20))
    assert torch.equal(test.x, test_x[test.idx])
