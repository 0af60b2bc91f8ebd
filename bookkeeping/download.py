"""CIFAR-10 put in place before data.py reads it: once, whoever asks first, whole or not at all.

`make -j3` on a fresh clone, or a Slurm job array, starts several processes at once: the first to
take root/cifar-10.lock (locks.py) downloads and unpacks, the others wait, then find the folder
made. A download is a .part file until its md5 sum is right, and the archive is unpacked into a
temporary folder, renamed into place in one step: nothing half-made has a name a reader looks for.
"""
import glob
import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.request

from bookkeeping import locks

URL = 'https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz'
MD5 = 'c58f30108f718f92721af3b95e74349a'
ARCHIVE = 'cifar-10-python.tar.gz'
FOLDER = 'cifar-10-batches-py'
LOCK = 'cifar-10.lock'  # never removed: removing it could let two processes each lock a file of that name


class DataError(Exception):
    """The data set is missing or unreadable; the message says where and what to do."""


def fetch(root, download=True):
    """Make sure root/cifar-10-batches-py/ is there and return its path: unpack root/cifar-10-python.tar.gz
    if it is not, downloading and checking the archive first if need be. Does nothing when the folder
    is there; raises DataError, with one line saying what to do, when it cannot make it."""
    folder, archive, lock = os.path.join(root, FOLDER), os.path.join(root, ARCHIVE), os.path.join(root, LOCK)
    where = f'put {ARCHIVE} (from {URL}) in {root}/, or its unpacked {FOLDER}/ folder'
    if os.path.isdir(folder):
        return folder
    if not download and not os.path.isfile(archive):
        raise DataError(f'CIFAR-10 is not in {folder}: {where}')
    try:
        os.makedirs(root, exist_ok=True)
        held = locks.acquire(lock, waiting=f'waiting for another process to fetch CIFAR-10 into {root}/')
    except OSError as e:  # a read-only folder, or a file system without locks (Lustre mounted noflock)
        raise DataError(f'cannot lock {lock} to fetch CIFAR-10 ({e}): {where}') from None
    try:
        if os.path.isdir(folder):  # made by the process we waited for
            return folder
        for leftover in glob.glob(os.path.join(root, '.unpacking-*')):  # of a process killed mid-unpack
            shutil.rmtree(leftover)
        if os.path.exists(archive + '.part'):  # of a process killed mid-download
            os.remove(archive + '.part')
        if not os.path.isfile(archive):
            download_archive(root, archive, where)
        unpack(root, archive, where)
        return folder
    finally:
        locks.release(held)


def download_archive(root, archive, where):
    """URL to root/cifar-10-python.tar.gz, if its md5 is MD5."""
    print(f'downloading {URL} to {root}/', flush=True)
    partial = archive + '.part'  # only a download that passed its md5 check gets the archive's name
    try:
        with urllib.request.urlopen(URL, timeout=60) as response, open(partial, 'wb') as f:
            shutil.copyfileobj(response, f)  # 163 MB; the timeout bounds each wait, not the whole
            if getattr(response, 'length', None):  # bytes still due: http.client ends a cut-off body quietly
                raise ValueError(f'the connection closed {response.length:,} bytes before the end')
        with open(partial, 'rb') as f:
            md5 = hashlib.file_digest(f, 'md5').hexdigest()
        if md5 != MD5:
            raise ValueError(f'its md5 is {md5}, not {MD5}')
        os.replace(partial, archive)
    except (OSError, ValueError, http.client.HTTPException) as e:  # no network (an OSError), a broken reply, a bad file
        raise DataError(f'could not download CIFAR-10 ({e}): {where}') from None
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def unpack(root, archive, where):
    """root/cifar-10-python.tar.gz to root/cifar-10-batches-py/."""
    print(f'unpacking {archive}', flush=True)
    # Unpacked beside the data set, then renamed into place in one step: a process that finds the
    # folder there never reads half of it, and one killed mid-way leaves only an .unpacking-* folder.
    unpacking = tempfile.mkdtemp(dir=root, prefix='.unpacking-')
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(unpacking, filter='data')
        os.rename(os.path.join(unpacking, FOLDER), os.path.join(root, FOLDER))
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f'{archive} is not a readable CIFAR-10 archive ({e}): delete it and {where}') from None
    finally:
        shutil.rmtree(unpacking, ignore_errors=True)
