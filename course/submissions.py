"""A class's submissions, taken in: one folder, .zip or .tar.gz per student, named by the student's
id, and from each only the chapters the exercises are in.

An archive is unpacked by hand, member by member, and refused whole, in one line, if a member's
path is absolute or climbs out of its folder (`../`), is a link or a device, or if the archive
holds too many members or too many bytes: a submission is a student's file, not a trusted one. A
folder is copied the same way: regular files only, no link followed.
"""
import os
import re
import shutil
import stat
import tarfile
import zipfile

MAX_BYTES = 100 * 2 ** 20   # unpacked, in all
MAX_FILES = 5_000
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


def unpack(path, into):
    """The submission at `path` (a folder, .zip or .tar.gz) as plain files under `into`. Refused if it
    will not unpack, reaches outside its folder, holds a link, or is too large."""
    os.makedirs(into)
    try:
        if os.path.isdir(path):
            copy_folder(path, into)
        elif path.endswith('.zip'):
            with zipfile.ZipFile(path) as archive:
                members = [(info.filename, info.is_dir(), stat.S_ISLNK(info.external_attr >> 16), info.file_size,
                            lambda info=info: archive.open(info)) for info in archive.infolist()]
                write(members, into)
        else:
            with tarfile.open(path, 'r:gz') as archive:
                members = []
                for info in archive.getmembers():
                    if not (info.isfile() or info.isdir()):
                        raise Refused(f'{os.path.basename(path)}: {info.name} is a link or a device, not a file')
                    members.append((info.name, info.isdir(), False, info.size, lambda info=info: archive.extractfile(info)))
                write(members, into)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as e:
        raise Refused(f'{os.path.basename(path)} will not unpack ({type(e).__name__}: {e})') from None


def write(members, into):
    """Each (name, is a folder, is a link, size, opener) member under `into`, after checking them all."""
    if len(members) > MAX_FILES:
        raise Refused(f'it holds {len(members)} files, more than {MAX_FILES}')
    if sum(size for _, _, _, size, _ in members) > MAX_BYTES:
        raise Refused(f'it unpacks to more than {MAX_BYTES // 2 ** 20} MB')
    for name, _, link, _, _ in members:
        parts = name.replace('\\', '/').split('/')
        if name.startswith('/') or '..' in parts or re.match(r'^[A-Za-z]:', name):
            raise Refused(f'{name} would unpack outside its folder')
        if link:
            raise Refused(f'{name} is a link, not a file')
    written = 0
    for name, folder, _, _, opener in members:
        target = os.path.join(into, *[p for p in name.replace('\\', '/').split('/') if p not in ('', '.')])
        if folder:
            os.makedirs(target, exist_ok=True)
            continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with opener() as source, open(target, 'wb') as f:
            while chunk := source.read(2 ** 20):  # the size a header claims may lie: count what comes
                written += len(chunk)
                if written > MAX_BYTES:
                    raise Refused(f'it unpacks to more than {MAX_BYTES // 2 ** 20} MB')
                f.write(chunk)


def copy_folder(path, into):
    """A folder's regular files, copied under `into`; Refused if it holds a link, or too much."""
    links, size, count = [], 0, 0
    for folder, dirs, files in os.walk(path):
        for name in dirs + files:
            full = os.path.join(folder, name)
            if os.path.islink(full) or not (os.path.isdir(full) or os.path.isfile(full)):
                links.append(os.path.relpath(full, path))
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(folder, d))]
        for name in files:
            full = os.path.join(folder, name)
            if os.path.isfile(full) and not os.path.islink(full):
                size, count = size + os.path.getsize(full), count + 1
                if size > MAX_BYTES or count > MAX_FILES:
                    raise Refused(f'it holds more than {MAX_BYTES // 2 ** 20} MB or {MAX_FILES} files')
                target = os.path.join(into, os.path.relpath(full, path))
                os.makedirs(os.path.dirname(target), exist_ok=True)
                shutil.copyfile(full, target)
    if links:
        raise Refused(f'{links[0]} is a link or a device, not a file')


def chapters(unpacked, wanted):
    """From the files under `unpacked`: the chapters named in `wanted` that stand in the shallowest
    folder holding any of them (the submission itself, or the one folder it was zipped with), as
    {chapter: path}; and every other file, relative to `unpacked`, which the grade ignores."""
    all_files = sorted(os.path.relpath(os.path.join(folder, name), unpacked)
                       for folder, _, names in os.walk(unpacked) for name in names)
    holding = sorted({os.path.dirname(f) for f in all_files if os.path.basename(f) in wanted},
                     key=lambda d: (d.count(os.sep) if d else -1, d))
    top = holding[0] if holding else None
    taken = {os.path.basename(f): os.path.join(unpacked, f) for f in all_files
             if top is not None and os.path.dirname(f) == top and os.path.basename(f) in wanted}
    ignored = [f for f in all_files if os.path.join(unpacked, f) not in taken.values()]
    return taken, ignored
