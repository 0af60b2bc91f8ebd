"""data.py promises CIFAR-10 read from the official batch files, an exact class-balanced seeded
split, class-balanced subsets, and normalising statistics of the training split."""
import hashlib
import http.server
import math
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
import threading
import time

import numpy as np
import pytest
import torch

import data
from conftest import PER_CLASS, ROOT, make_cifar, write_batch
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
    (root / '.unpacking-killed' / data.FOLDER).mkdir(parents=True)  # what a process killed mid-unpack leaves
    assert load_cifar10(str(root))[0].shape == (50 * PER_CLASS, 3, 32, 32)
    assert sorted(os.listdir(root)) == sorted([data.ARCHIVE, data.FOLDER, data.LOCK])


def test_corrupt_archive_is_one_clear_error(tmp_path):
    (tmp_path / data.ARCHIVE).write_bytes(b'not a tar file')
    with pytest.raises(DataError, match='not a readable CIFAR-10 archive'):
        load_cifar10(str(tmp_path))


# Several processes at once: `make -j3 lr-sweep` on a fresh clone, or the tasks of a Slurm job
# array, all load the data set in the same second. Real processes, started together, and a real
# HTTP server: a race only shows when it is run.

# One such process: it says it is ready, waits at the start line for the others, loads the data
# set and prints a digest of the four tensors it read (as digest() below computes it).
CHILD = '''
import hashlib, os, sys, time
sys.path.insert(0, {root!r})
import data
root, start, url, md5 = sys.argv[1:]
if url:
    data.URL, data.MD5 = url, md5
print('ready', flush=True)
while not os.path.exists(start):
    time.sleep(0.001)
tensors = data.load_cifar10(root)
print('read', hashlib.md5(b''.join(t.numpy().tobytes() for t in tensors)).hexdigest(), flush=True)
'''.format(root=ROOT)


def digest(tensors):
    return hashlib.md5(b''.join(t.numpy().tobytes() for t in tensors)).hexdigest()


def start_together(root, url='', md5='', n=3):
    """n processes that load the data set from root at the same moment: their exit statuses and outputs."""
    start = os.path.join(os.path.dirname(root), 'start')
    procs = [subprocess.Popen([sys.executable, '-c', CHILD, root, start, url, md5], text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(n)]
    try:
        for proc in procs:
            assert proc.stdout.readline() == 'ready\n'  # past the slow `import torch`
    finally:
        open(start, 'w').close()
    outputs = [proc.communicate(timeout=300)[0] for proc in procs]  # generous: a loaded machine is slow, not wrong
    return [proc.returncode for proc in procs], outputs


def lines_starting(outputs, word):
    return [line for out in outputs for line in out.splitlines() if line.startswith(word)]


BIG = 1000  # images per batch file: 18 MB to unpack, long enough for another process to see half of it


@pytest.fixture(scope='module')
def big_archive(tmp_path_factory):
    """cifar-10-python.tar.gz of six batch files of BIG random images, and the digest of its tensors."""
    src = tmp_path_factory.mktemp('big')
    (src / data.FOLDER).mkdir()
    g = torch.Generator().manual_seed(0)
    for name in data.TRAIN_BATCHES + (data.TEST_BATCH,):
        images = torch.randint(0, 256, (BIG, 3, 32, 32), dtype=torch.uint8, generator=g)
        write_batch(src / data.FOLDER / name, images, torch.randint(0, 10, (BIG,), generator=g))
    with tarfile.open(src / data.ARCHIVE, 'w:gz', compresslevel=1) as tar:
        tar.add(src / data.FOLDER, arcname=data.FOLDER)
    return src / data.ARCHIVE, digest(load_cifar10(str(src), download=False))


@pytest.mark.slow
def test_processes_that_start_together_unpack_the_archive_once(tmp_path, big_archive):
    """Unpacked in place and unlocked, a process that found the folder begun read half a batch file."""
    archive, want = big_archive
    root = tmp_path / 'data'
    root.mkdir()
    shutil.copy(archive, root)
    codes, outputs = start_together(str(root))
    assert codes == [0, 0, 0], outputs
    assert all(f'read {want}' in out for out in outputs), outputs
    assert len(lines_starting(outputs, 'unpacking')) == 1, outputs
    assert all(out.count('waiting for another process') <= 1 for out in outputs), outputs
    assert sorted(os.listdir(root)) == sorted([data.ARCHIVE, data.FOLDER, data.LOCK])


class ArchiveHandler(http.server.BaseHTTPRequestHandler):
    """Serves the server's `body` slowly, in 32 kB pieces 5 ms apart, so that downloads overlap.
    /cut/... sends half of it and hangs up; /stall/... sends half and waits until the test ends."""

    def do_GET(self):
        self.server.requests.append(self.path)
        body = self.server.body
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        end = len(body) // 2 if self.path.startswith(('/cut/', '/stall/')) else len(body)
        for i in range(0, end, 32768):
            self.wfile.write(body[i:min(i + 32768, end)])
            time.sleep(0.005)
        if self.path.startswith('/stall/'):
            self.server.ended.wait(30)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """A real HTTP server on 127.0.0.1 with the fake data set's archive; .url, .md5, .requests."""
    archive, md5 = archive_of_fake_data(tmp_path)
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), ArchiveHandler)
    httpd.body, httpd.md5, httpd.requests, httpd.ended = archive.read_bytes(), md5, [], threading.Event()
    httpd.url = f'http://127.0.0.1:{httpd.server_port}'
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd
    httpd.ended.set()
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.slow
def test_processes_that_start_together_on_a_fresh_clone_download_once(tmp_path, server):
    """Unlocked, all downloaded into one .part, which the first renamed under the others' feet."""
    root = tmp_path / 'data'
    codes, outputs = start_together(str(root), f'{server.url}/{data.ARCHIVE}', server.md5)
    assert codes == [0, 0, 0], outputs
    want = digest(load_cifar10(str(tmp_path / 'src'), download=False))  # what archive_of_fake_data packed
    assert all(f'read {want}' in out for out in outputs), outputs
    assert len(lines_starting(outputs, 'downloading')) == 1 and len(server.requests) == 1, outputs
    assert len(lines_starting(outputs, 'unpacking')) == 1, outputs
    assert all(out.count('waiting for another process') <= 1 for out in outputs), outputs
    assert sorted(os.listdir(root)) == sorted([data.ARCHIVE, data.FOLDER, data.LOCK])


def test_a_download_cut_off_leaves_nothing_and_is_one_clear_error(tmp_path, server, monkeypatch):
    monkeypatch.setattr(data, 'URL', f'{server.url}/cut/{data.ARCHIVE}')
    monkeypatch.setattr(data, 'MD5', server.md5)
    with pytest.raises(DataError, match='could not download CIFAR-10 .*bytes before the end') as error:
        data.fetch(str(tmp_path / 'data'))
    assert len(str(error.value).splitlines()) == 1
    assert os.listdir(tmp_path / 'data') == [data.LOCK]


@pytest.mark.slow
def test_a_process_killed_mid_download_holds_up_no_one_and_its_leftovers_go(tmp_path, server, monkeypatch):
    root, start = tmp_path / 'data', tmp_path / 'start'
    start.touch()
    killed = subprocess.Popen([sys.executable, '-c', CHILD, str(root), str(start), f'{server.url}/stall/{data.ARCHIVE}',
                               server.md5], stdout=subprocess.DEVNULL)
    part = root / (data.ARCHIVE + '.part')
    while not (part.exists() and part.stat().st_size > 0):  # it holds the lock, mid-download
        assert killed.poll() is None
        time.sleep(0.05)
    killed.kill()  # SIGKILL: no `finally` runs, no cleanup
    killed.wait()
    (root / '.unpacking-x' / data.FOLDER).mkdir(parents=True)  # as a process killed mid-unpack leaves it
    monkeypatch.setattr(data, 'URL', f'{server.url}/{data.ARCHIVE}')
    monkeypatch.setattr(data, 'MD5', server.md5)
    assert data.fetch(str(root)) == os.path.join(root, data.FOLDER)
    assert sorted(os.listdir(root)) == sorted([data.ARCHIVE, data.FOLDER, data.LOCK])


def test_a_data_folder_that_cannot_be_made_is_one_clear_error(tmp_path):
    (tmp_path / 'data').write_text('')  # a file where the folder should be: --data-dir mistyped
    with pytest.raises(DataError, match='cannot lock .*cifar-10.lock to fetch CIFAR-10 .*put cifar-10-python.tar.gz'):
        data.fetch(str(tmp_path / 'data'))


def test_fetch_leaves_a_data_set_in_place_alone(tmp_path, monkeypatch):
    """A shared, read-only copy on a cluster: nothing is written, nothing downloaded."""
    make_cifar(str(tmp_path))
    monkeypatch.setattr(data, 'URL', (tmp_path / 'nowhere').as_uri())
    tmp_path.chmod(0o555)
    try:
        assert data.fetch(str(tmp_path)) == os.path.join(tmp_path, data.FOLDER)
        assert os.listdir(tmp_path) == [data.FOLDER]
    finally:
        tmp_path.chmod(0o755)


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
    folder = tmp_path / data.FOLDER
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
