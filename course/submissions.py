"""A class's submissions, taken in: one folder, .zip or .tar.gz per student, named by the student's
id, and from each only the chapters that hold exercises.

A submission is a student's file, not a trusted one. An archive is read member by member, and
refused whole, in one line, if a member's path is absolute or climbs out of its folder (`../`), if
a chapter in it is a link or a device, or if it holds too many members. Only the files named as
chapters are written out, each at most MAX_CHAPTER bytes, counted as they come (the sizes in an
archive's headers may lie); everything else, a .venv or a data set included, is only listed, for
the student's feedback. A .tar.gz is inflated as it is read, all of it, so it is refused once it
inflates past MAX_INFLATED bytes, or past RATIO times the bytes it was packed in (a compression
bomb: 16 MB of zeros that inflate to 16 GB is refused at 64 MB, in a moment); a .zip inflates only
its chapters. A folder is read the same way, following no link.
"""
import gzip
import os
import re
import stat
import tarfile
import zipfile
import zlib

MAX_CHAPTER = 2 * 2 ** 20  # bytes of one chapter: the largest of ours is 20 kB
MAX_MEMBERS = 200_000      # a whole working folder, .venv and .git included, holds some 30,000
MAX_INFLATED = 16 * 2 ** 30  # bytes a .tar.gz may inflate to: a working folder with torch's CUDA build in .venv is 6 GB
RATIO, FROM = 50, 64 * 2 ** 20  # and past FROM bytes, at most RATIO times its packed bytes; a .venv packs about 3 to 1
SUFFIXES = ('.tar.gz', '.tgz', '.zip')


class Refused(Exception):
    """A submission that cannot be taken in; the message says why, in one line."""


def found(folder):
    """[(student id, path)] for each submission in `folder`, sorted by id; the id is the name of
    the folder or archive, less its suffix."""
    entries = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        suffix = next((s for s in SUFFIXES if name.endswith(s)), None)
        if suffix or (os.path.isdir(path) and not os.path.islink(path)):
            entries.append((name[:-len(suffix)] if suffix else name, path))
    return entries


def safe_id(student):
    """The id, as a file name: anything but letters, digits and . _ @ - becomes _."""
    return re.sub(r'[^\w.@-]', '_', student) or '_'


def take(path, wanted, into):
    """From the submission at `path`, the chapters named in `wanted` that stand in the shallowest
    folder holding any of them (the submission itself, or the one folder it was sent in), written
    under `into`, as {chapter: path}; and every other file it holds, by its path within, which the
    grade ignores. Refused if it will not be read, reaches outside its folder, holds a chapter that
    is a link, or holds too many members or chapters."""
    files, chapters, buffered = [], {}, 0
    try:
        for name, kind, opener in read(path):
            if kind == 'folder':
                continue
            files.append(name)
            if name.rsplit('/', 1)[-1] in wanted:  # read now: an archive is read once, in order
                chapters[name] = kind == 'file' and bytes_of(opener, name)
                buffered += len(chapters[name] or b'')
                if buffered > 20 * MAX_CHAPTER:
                    raise Refused(f'it holds more than {20 * MAX_CHAPTER // 2 ** 20} MB of files named as chapters')
    except (zipfile.BadZipFile, tarfile.TarError, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError) as e:
        raise Refused(f'{os.path.basename(path)} will not unpack ({type(e).__name__}: {e})') from None
    folders = sorted({os.path.dirname(name) for name in chapters}, key=lambda d: (d.count('/') if d else -1, d))
    chosen = [name for name in chapters if folders and os.path.dirname(name) == folders[0]]
    taken = {}
    for name in chosen:
        if chapters[name] is False:
            raise Refused(f'{name} is a link or a device, not a file')
        taken[os.path.basename(name)] = os.path.join(into, os.path.basename(name))
        os.makedirs(into, exist_ok=True)
        with open(taken[os.path.basename(name)], 'wb') as f:
            f.write(chapters[name])
    return taken, sorted(name for name in files if name not in chosen)


def read(path):
    """(name, kind, opener) for each member of the submission: kind 'file', 'folder' or 'other' (a
    link, a device), opener a function that opens a file's bytes. Refused for a path out of bounds."""
    def checked(name):
        name = name.replace('\\', '/')
        parts = [p for p in name.split('/') if p not in ('', '.')]
        if name.startswith('/') or '..' in parts or re.match(r'^[A-Za-z]:', name):
            raise Refused(f'{name} would unpack outside its folder')
        return '/'.join(parts)
    count = 0
    if os.path.isdir(path):
        for folder, dirs, names in os.walk(path):  # followlinks=False: a link to a folder is not entered
            for name in dirs + names:
                full = os.path.join(folder, name)
                kind = 'other' if os.path.islink(full) else 'folder' if os.path.isdir(full) else \
                    'file' if os.path.isfile(full) else 'other'
                yield os.path.relpath(full, path).replace(os.sep, '/'), kind, lambda full=full: open(full, 'rb')
                count += 1
    elif path.endswith('.zip'):
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                link = stat.S_ISLNK(info.external_attr >> 16)
                yield checked(info.filename), 'folder' if info.is_dir() else 'other' if link else 'file', \
                    lambda info=info: archive.open(info)
                count += 1
                if count > MAX_MEMBERS:
                    break
    else:
        with open(path, 'rb') as packed, tarfile.open(fileobj=Inflated(packed), mode='r|') as archive:
            for info in archive:  # one member at a time: a large archive is never listed whole
                yield checked(info.name), 'folder' if info.isdir() else 'file' if info.isfile() else 'other', \
                    lambda info=info: archive.extractfile(info)
                count += 1
                if count > MAX_MEMBERS:
                    break
    if count > MAX_MEMBERS:
        raise Refused(f'it holds more than {MAX_MEMBERS:,} files')


def bytes_of(opener, name):
    """A member's bytes, at most MAX_CHAPTER of them, counted as they come."""
    with opener() as source:
        data = source.read(MAX_CHAPTER + 1)
    if len(data) > MAX_CHAPTER:
        raise Refused(f'{name} is larger than {MAX_CHAPTER // 2 ** 20} MB: no chapter is')
    return data


class Inflated:
    """A .tar.gz inflated as tarfile reads it, refused once it has inflated past MAX_INFLATED bytes,
    or (past FROM bytes) to more than RATIO times the packed bytes read so far."""

    def __init__(self, packed):
        self.packed, self.gzip, self.inflated = packed, gzip.GzipFile(fileobj=packed), 0

    def read(self, size=-1):
        data = self.gzip.read(size if size >= 0 else 2 ** 20)
        self.inflated += len(data)
        if self.inflated > MAX_INFLATED:
            raise Refused(f'it inflates past {MAX_INFLATED // 2 ** 30} GB')
        if self.inflated > FROM and self.inflated > RATIO * self.packed.tell():
            raise Refused(f'it inflates to more than {RATIO} times its size: a compression bomb')
        return data
