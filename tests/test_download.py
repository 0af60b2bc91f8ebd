"""bookkeeping/download.py promises CIFAR-10 in place before data.py reads it: downloaded and
checked against its md5 sum, or unpacked from an archive put there by hand; once, whoever asks
first, when several processes ask at once; whole or not at all, when a download is cut off or a
process killed; and one line saying what to do when it cannot be."""
import hashlib
import http.server
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import time

import pytest
import torch

import data
from bookkeeping import download, locks
from bookkeeping.download import DataError
from conftest import PER_CLASS, ROOT, make_cifar, write_batch
from data import load_cifar10


def test_missing_data_set_without_download_says_where_to_put_it(tmp_path):
    with pytest.raises(DataError, match='cifar-10-python.tar.gz'):
        load_cifar10(str(tmp_path), download=False)


def archive_of_fake_data(tmp_path):
    src = tmp_path / 'src'
    make_cifar(str(src))
    archive = tmp_path / 'served' / download.ARCHIVE
    archive.parent.mkdir()
    with tarfile.open(archive, 'w:gz') as tar:
        tar.add(src / download.FOLDER, arcname=download.FOLDER)
    return archive, hashlib.md5(archive.read_bytes()).hexdigest()


def test_downloads_checks_and_unpacks_the_archive(tmp_path, monkeypatch):
    archive, md5 = archive_of_fake_data(tmp_path)
    monkeypatch.setattr(download, 'URL', archive.as_uri())  # a real download, from a file:// address
    monkeypatch.setattr(download, 'MD5', md5)
    root = tmp_path / 'root'
    x, y, _, _ = load_cifar10(str(root))
    assert x.shape == (50 * PER_CLASS, 3, 32, 32) and (root / download.ARCHIVE).exists()


def test_download_with_wrong_md5_is_refused_and_removed(tmp_path, monkeypatch):
    archive, _ = archive_of_fake_data(tmp_path)
    monkeypatch.setattr(download, 'URL', archive.as_uri())
    monkeypatch.setattr(download, 'MD5', '0' * 32)
    with pytest.raises(DataError, match='could not download'):
        load_cifar10(str(tmp_path / 'root'))
    assert not (tmp_path / 'root' / download.ARCHIVE).exists()


def test_unreachable_download_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(download, 'URL', (tmp_path / 'nowhere' / download.ARCHIVE).as_uri())
    with pytest.raises(DataError, match='could not download CIFAR-10.*put cifar-10-python.tar.gz'):
        load_cifar10(str(tmp_path / 'root'))


def test_an_archive_put_in_place_is_unpacked_without_download(tmp_path, monkeypatch):
    archive, _ = archive_of_fake_data(tmp_path)
    monkeypatch.setattr(download, 'URL', (tmp_path / 'nowhere').as_uri())
    root = tmp_path / 'root'
    root.mkdir()
    os.rename(archive, root / download.ARCHIVE)
    (root / '.unpacking-killed' / download.FOLDER).mkdir(parents=True)  # what a process killed mid-unpack leaves
    assert load_cifar10(str(root))[0].shape == (50 * PER_CLASS, 3, 32, 32)
    assert sorted(os.listdir(root)) == sorted([download.ARCHIVE, download.FOLDER, download.LOCK])


def test_a_fetch_that_finds_the_lock_held_says_so_once_and_goes_on_when_it_is_let_go(tmp_path, capsys):
    """The wait of locks.py that fetch takes its turn with, in the quick tests (the slow ones race processes)."""
    archive, _ = archive_of_fake_data(tmp_path)
    root = tmp_path / 'root'
    root.mkdir()
    os.rename(archive, root / download.ARCHIVE)
    held = locks.acquire(str(root / download.LOCK))  # as another process that fetches holds it
    fetched = []
    fetching = threading.Thread(target=lambda: fetched.append(download.fetch(str(root))))
    fetching.start()
    time.sleep(2)  # past acquire's half second of retries
    assert fetching.is_alive() and not (root / download.FOLDER).exists()
    locks.release(held)
    fetching.join(60)
    assert fetched == [str(root / download.FOLDER)]
    out = capsys.readouterr().out
    assert out.count('waiting for another process to fetch CIFAR-10') == 1 and 'unpacking' in out, out


def test_a_fetch_that_waited_takes_the_folder_made_meanwhile(tmp_path, capsys):
    """Another process holds the lock while it unpacks, and makes the folder. Once it lets go, the
    fetch that waited takes that folder as it is: it neither downloads nor unpacks again, which
    this archive, not one, would make an error."""
    (tmp_path / download.ARCHIVE).write_bytes(b'not a tar file')
    held = locks.acquire(str(tmp_path / download.LOCK))  # as another process that fetches holds it
    fetched = []

    def fetch():
        try:
            fetched.append(download.fetch(str(tmp_path)))
        except DataError as e:
            fetched.append(e)
    fetching = threading.Thread(target=fetch)
    fetching.start()
    time.sleep(2)  # past acquire's half second of retries: it waits
    make_cifar(str(tmp_path))  # what the other process unpacked
    locks.release(held)
    fetching.join(60)
    assert fetched == [str(tmp_path / download.FOLDER)]
    assert 'unpacking' not in capsys.readouterr().out


def test_corrupt_archive_is_one_clear_error(tmp_path):
    (tmp_path / download.ARCHIVE).write_bytes(b'not a tar file')
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
from bookkeeping import download
root, start, url, md5 = sys.argv[1:]
if url:
    download.URL, download.MD5 = url, md5
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
    (src / download.FOLDER).mkdir()
    g = torch.Generator().manual_seed(0)
    for name in data.TRAIN_BATCHES + (data.TEST_BATCH,):
        images = torch.randint(0, 256, (BIG, 3, 32, 32), dtype=torch.uint8, generator=g)
        write_batch(src / download.FOLDER / name, images, torch.randint(0, 10, (BIG,), generator=g))
    with tarfile.open(src / download.ARCHIVE, 'w:gz', compresslevel=1) as tar:
        tar.add(src / download.FOLDER, arcname=download.FOLDER)
    return src / download.ARCHIVE, digest(load_cifar10(str(src), download=False))


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
    assert sorted(os.listdir(root)) == sorted([download.ARCHIVE, download.FOLDER, download.LOCK])


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
    codes, outputs = start_together(str(root), f'{server.url}/{download.ARCHIVE}', server.md5)
    assert codes == [0, 0, 0], outputs
    want = digest(load_cifar10(str(tmp_path / 'src'), download=False))  # what archive_of_fake_data packed
    assert all(f'read {want}' in out for out in outputs), outputs
    assert len(lines_starting(outputs, 'downloading')) == 1 and len(server.requests) == 1, outputs
    assert len(lines_starting(outputs, 'unpacking')) == 1, outputs
    assert all(out.count('waiting for another process') <= 1 for out in outputs), outputs
    assert sorted(os.listdir(root)) == sorted([download.ARCHIVE, download.FOLDER, download.LOCK])


def test_a_download_cut_off_leaves_nothing_and_is_one_clear_error(tmp_path, server, monkeypatch):
    monkeypatch.setattr(download, 'URL', f'{server.url}/cut/{download.ARCHIVE}')
    monkeypatch.setattr(download, 'MD5', server.md5)
    with pytest.raises(DataError, match='could not download CIFAR-10 .*bytes before the end') as error:
        download.fetch(str(tmp_path / 'data'))
    assert len(str(error.value).splitlines()) == 1
    assert os.listdir(tmp_path / 'data') == [download.LOCK]


@pytest.mark.slow
def test_a_process_killed_mid_download_holds_up_no_one_and_its_leftovers_go(tmp_path, server, monkeypatch):
    root, start = tmp_path / 'data', tmp_path / 'start'
    start.touch()
    killed = subprocess.Popen([sys.executable, '-c', CHILD, str(root), str(start), f'{server.url}/stall/{download.ARCHIVE}',
                               server.md5], stdout=subprocess.DEVNULL)
    part = root / (download.ARCHIVE + '.part')
    while not (part.exists() and part.stat().st_size > 0):  # it holds the lock, mid-download
        assert killed.poll() is None
        time.sleep(0.05)
    killed.kill()  # SIGKILL: no `finally` runs, no cleanup
    killed.wait()
    (root / '.unpacking-x' / download.FOLDER).mkdir(parents=True)  # as a process killed mid-unpack leaves it
    monkeypatch.setattr(download, 'URL', f'{server.url}/{download.ARCHIVE}')
    monkeypatch.setattr(download, 'MD5', server.md5)
    assert download.fetch(str(root)) == os.path.join(root, download.FOLDER)
    assert sorted(os.listdir(root)) == sorted([download.ARCHIVE, download.FOLDER, download.LOCK])


def test_a_data_folder_that_cannot_be_made_is_one_clear_error(tmp_path):
    (tmp_path / 'data').write_text('')  # a file where the folder should be: --data-dir mistyped
    with pytest.raises(DataError, match='cannot lock .*cifar-10.lock to fetch CIFAR-10 .*put cifar-10-python.tar.gz'):
        download.fetch(str(tmp_path / 'data'))


def test_fetch_leaves_a_data_set_in_place_alone(tmp_path, monkeypatch):
    """A shared, read-only copy on a cluster: nothing is written, nothing downloaded."""
    make_cifar(str(tmp_path))
    monkeypatch.setattr(download, 'URL', (tmp_path / 'nowhere').as_uri())
    tmp_path.chmod(0o555)
    try:
        assert download.fetch(str(tmp_path)) == os.path.join(tmp_path, download.FOLDER)
        assert os.listdir(tmp_path) == [download.FOLDER]
    finally:
        tmp_path.chmod(0o755)
