"""data.py promises CIFAR-10 read from the official batch files, an exact class-balanced seeded
split, class-balanced subsets, and normalising statistics of the training split."""
import hashlib
import os
import pickle
import tarfile

import numpy as np
import pytest
import torch

import data
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


def test_missing_data_set_without_download_says_where_to_put_it(tmp_path):
    with pytest.raises(DataError, match='cifar-10-python.tar.gz'):
        load_cifar10(str(tmp_path), download=False)


def archive_of_fake_data(tmp_path):
    src = tmp_path / 'src'
    make_cifar(str(src))
    archive = tmp_path / 'served' / data.ARCHIVE
    archive.parent.mkdir()
    with tarfile.open(archive, 'w:gz') as tar:
        tar.add(src / data.FOLDER, arcname=data.FOLDER)
    return archive, hashlib.md5(archive.read_bytes()).hexdigest()


def test_downloads_checks_and_unpacks_the_archive(tmp_path, monkeypatch):
    archive, md5 = archive_of_fake_data(tmp_path)
    monkeypatch.setattr(data, 'URL', archive.as_uri())  # a real download, from a file:// address
    monkeypatch.setattr(data, 'MD5', md5)
    root = tmp_path / 'root'
    x, y, _, _ = load_cifar10(str(root))
    assert x.shape == (50 * PER_CLASS, 3, 32, 32) and (root / data.ARCHIVE).exists()


def test_download_with_wrong_md5_is_refused_and_removed(tmp_path, monkeypatch):
    archive, _ = archive_of_fake_data(tmp_path)
    monkeypatch.setattr(data, 'URL', archive.as_uri())
    monkeypatch.setattr(data, 'MD5', '0' * 32)
    with pytest.raises(DataError, match='could not download'):
        load_cifar10(str(tmp_path / 'root'))
    assert not (tmp_path / 'root' / data.ARCHIVE).exists()


def test_unreachable_download_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(data, 'URL', (tmp_path / 'nowhere' / data.ARCHIVE).as_uri())
    with pytest.raises(DataError, match='could not download CIFAR-10.*put cifar-10-python.tar.gz'):
        load_cifar10(str(tmp_path / 'root'))


def test_an_archive_put_in_place_is_unpacked_without_download(tmp_path, monkeypatch):
    archive, _ = archive_of_fake_data(tmp_path)
    monkeypatch.setattr(data, 'URL', (tmp_path / 'nowhere').as_uri())
    root = tmp_path / 'root'
    root.mkdir()
    os.rename(archive, root / data.ARCHIVE)
    assert load_cifar10(str(root))[0].shape == (50 * PER_CLASS, 3, 32, 32)


def test_corrupt_archive_is_one_clear_error(tmp_path):
    (tmp_path / data.ARCHIVE).write_bytes(b'not a tar file')
    with pytest.raises(DataError, match='not a readable CIFAR-10 archive'):
        load_cifar10(str(tmp_path))


@pytest.mark.parametrize('damage', ['truncated', 'not a pickle', 'a list', 'cifar-100 keys', 'float data', 'bad label', 'missing'])
def test_damaged_batch_file_names_the_file(tmp_path, damage):
    make_cifar(str(tmp_path))
    path = tmp_path / data.FOLDER / 'data_batch_3'
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


def test_split_is_exactly_balanced_disjoint_and_complete():
    labels = cifar_like_labels()
    train_idx, val_idx = balanced_split(labels, val_per_class=1000, seed=0)
    assert torch.bincount(labels[train_idx]).tolist() == [4000] * 10
    assert torch.bincount(labels[val_idx]).tolist() == [1000] * 10
    assert torch.equal(torch.cat([train_idx, val_idx]).sort().values, torch.arange(50000))


def test_split_is_seeded():
    labels = cifar_like_labels()
    a, b, c = (balanced_split(labels, 1000, seed) for seed in (0, 0, 1))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1].sort().values, c[1].sort().values)


def test_split_order_is_random_so_the_first_batch_mixes_classes():
    labels = cifar_like_labels()
    train_idx, _ = balanced_split(labels, 1000, seed=0)
    assert len(labels[train_idx[:128]].unique()) == 10


def test_split_refuses_classes_too_small_to_split():
    with pytest.raises(ValueError):
        balanced_split(torch.arange(10).repeat(5), val_per_class=5)


@pytest.mark.parametrize('n', [10, 64, 4000, 39999])
def test_subset_is_class_balanced_and_drawn_from_the_indices(n):
    labels = cifar_like_labels()
    train_idx, _ = balanced_split(labels, 1000, seed=0)
    subset = balanced_subset(train_idx, labels, n)
    counts = torch.bincount(labels[subset], minlength=10)
    assert len(subset) == n and counts.max() - counts.min() <= 1
    assert len(set(subset.tolist())) == n and set(subset.tolist()) <= set(train_idx.tolist())


def test_channel_stats_match_numpy_in_float64():
    images = torch.randint(0, 256, (50, 3, 32, 32), dtype=torch.uint8)
    mean, std = channel_stats(images)
    x = images.numpy().astype(np.float64) / 255
    np.testing.assert_allclose(mean.numpy(), x.mean(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(std.numpy(), x.std(axis=(0, 2, 3), ddof=1), rtol=1e-5)
    z = normalize(images, mean, std)
    torch.testing.assert_close(z.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-5, rtol=0)
