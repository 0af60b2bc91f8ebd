"""Tiny CIFAR-10 stand-ins written in the official on-disk format, so the tests run the real
loading code without the real data set or a network."""
import os
import pickle
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

PER_CLASS = 5  # images of each class in each of the six batch files: 250 training, 50 test images


def write_batch(path, images, labels, str_keys=False):
    """One batch file as the official ones are laid out: 'data' rows of 3072 bytes (R, G, B planes)."""
    key = (lambda k: k) if str_keys else (lambda k: k.encode())
    batch = {key('batch_label'): key('fake batch'), key('labels'): [int(v) for v in labels],
             key('data'): images.reshape(len(images), -1).numpy(),
             key('filenames'): [key(f'{i}.png') for i in range(len(labels))]}
    with open(path, 'wb') as f:
        pickle.dump(batch, f, protocol=2)


def make_cifar(root, str_keys=False, seed=0):
    """root/cifar-10-batches-py/ with five training batches and a test batch of random images.
    Returns the images and labels written: train_x, train_y, test_x, test_y."""
    g = torch.Generator().manual_seed(seed)
    folder = os.path.join(root, 'cifar-10-batches-py')
    os.makedirs(folder, exist_ok=True)
    written = []
    for name in ['data_batch_1', 'data_batch_2', 'data_batch_3', 'data_batch_4', 'data_batch_5', 'test_batch']:
        labels = torch.arange(10).repeat(PER_CLASS)[torch.randperm(10 * PER_CLASS, generator=g)]
        images = torch.randint(0, 256, (len(labels), 3, 32, 32), dtype=torch.uint8, generator=g)
        write_batch(os.path.join(folder, name), images, labels, str_keys)
        written.append((images, labels))
    train = written[:5]
    return (torch.cat([x for x, _ in train]), torch.cat([y for _, y in train])) + written[5]


@pytest.fixture(scope='session')
def cifar_root(tmp_path_factory):
    """A read-only-by-convention fake data set shared by the tests that only read it."""
    root = str(tmp_path_factory.mktemp('cifar'))
    make_cifar(root)
    return root
