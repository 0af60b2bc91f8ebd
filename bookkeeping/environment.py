"""The Python environment a make target or a chapter runs in: the packages it needs, from the oldest
versions this project supports (FLOOR) up, checked before it runs; and the folders it writes to.

    python -m bookkeeping.environment torch pytest torchvision      exit 0, or one line and exit 1
    python -m bookkeeping.environment --folder runs                 the folder made, or one line and exit 1
    python -m bookkeeping.environment --could-make runs             the same, making nothing (make -n)

`make` builds its own .venv from requirements.txt, with the exact versions of requirements.lock,
unless it is told the Python to use, `make test PY=/path/to/python`: on Colab or Kaggle the
runtime's own torch, on a cluster the module's, in a conda environment its own. Then it makes no
.venv, and checks here that the Python has what the target needs, naming in one line what it
lacks. Only the standard library is used: it reads the installed versions without importing them.
"""
import importlib
import importlib.metadata
import os
import re
import sys

# The oldest version of each package the code is known to work with, all checked together by
# installing them and running every test (docs/where.md): requirements.txt's `name>=version` lines,
# the one list of them. (matplotlib 3.6 cuts a long figure title at the figure's edges instead of
# wrapping it: 3.7 is the oldest that wraps it.) A copy of the chapters without the file (the
# worker that runs a student's code at grading) has no floors to say.
REQUIREMENTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'requirements.txt')


def floors(path=REQUIREMENTS):
    """{package: its oldest version} from a requirements file's `name>=version` lines."""
    try:
        with open(path) as f:
            return dict(re.findall(r'^([A-Za-z0-9_.-]+)>=([\d.]+)\s*$', f.read(), re.M))
    except OSError:
        return {}


FLOOR = floors()


def as_numbers(version):
    """A version as numbers to compare: '2.14.1+cu130' is (2, 14, 1)."""
    return tuple(int(part) for part in re.findall(r'\d+', version.split('+')[0])[:3])


def lacks(package):
    """What this Python lacks of `package`, as a phrase ('pytest', 'torch 2.9.1 or later (it has
    2.1.0)'); '' if it has it, from the floor up."""
    wanted = f'{package} {FLOOR[package]} or later' if package in FLOOR else package
    try:
        have = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return wanted
    return f'{wanted} (it has {have})' if package in FLOOR and as_numbers(have) < as_numbers(FLOOR[package]) else ''


def lacking(needs):
    """What of `needs` (package names) this Python lacks, each as lacks() says it."""
    return [said for said in map(lacks, needs) if said]


def needs(*packages):
    """For a chapter run as a program (python train.py): if this Python lacks one of `packages`,
    one line that says which Python it is, what it lacks and the two ways out, and exit status 1,
    rather than the traceback of the import that would fail."""
    missing = []
    for package in packages:
        try:
            importlib.import_module(package)
        except ImportError:
            missing.append(package)
    if missing:
        sys.exit(f'{sys.executable} has no {" and no ".join(missing)}: use the project\'s Python (make test makes it; '
                 f'then . .venv/bin/activate), or install {"them" if len(missing) > 1 else "it"} into this one '
                 f'(pip install {" ".join(repr(f"{p}>={FLOOR[p]}" if p in FLOOR else p) for p in missing)}; '
                 f'docs/where.md says how make PY= uses it)')


def folder(path, make=True):
    """'' once `path` is a folder this user can write into, made if it was missing (unless not
    `make`: then only whether it could be); else why not, in a few words: a file stands there or on
    its path, or it is on a read-only file system, or not this user's to write."""
    if not make:
        there = path
        while not os.path.exists(there) and os.path.dirname(os.path.abspath(there)) != os.path.abspath(there):
            there = os.path.dirname(os.path.abspath(there))
        if not os.path.isdir(there):
            return f'{path} is a file, not a folder' if there == path else f'{path} cannot be made: a file stands on its path'
        return '' if os.access(there, os.W_OK) and not os.statvfs(there).f_flag & os.ST_RDONLY else \
            f'{path} cannot be made: Read-only file system'
    try:
        os.makedirs(path, exist_ok=True)
    except FileExistsError:
        return f'{path} is a file, not a folder'
    except NotADirectoryError:
        return f'{path} cannot be made: a file stands on its path'
    except OSError as e:
        return f'{path} cannot be made: {e.strerror}' + (f' ({e.filename})' if e.filename != path else '')
    if not os.access(path, os.W_OK) or os.statvfs(path).f_flag & os.ST_RDONLY:
        return f'{path} is read-only'
    return ''


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (['--folder'], ['--could-make']):
        why = folder(argv[1], make=argv[0] == '--folder')
        if why:
            print(why, file=sys.stderr)
        return 1 if why else 0
    needs = argv
    missing = [package for package in needs if lacks(package)]
    if missing:
        asked = ' '.join(repr(f'{p}>={FLOOR[p]}' if p in FLOOR else p) for p in missing)  # what pip is asked for
        print(f'{sys.executable} lacks what this target needs: {", ".join(lacking(missing))}. Install them '
              f'(pip install {asked}), or leave PY= out to use .venv', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
