"""The Python environment a make target runs in: the packages it needs, from the oldest versions
this project supports (FLOOR) up, checked before it runs.

    python -m bookkeeping.environment torch pytest torchvision      exit 0, or one line and exit 1

`make` builds its own .venv from requirements.txt, with the exact versions of requirements.lock,
unless it is told the Python to use, `make test PY=/path/to/python`: on Colab or Kaggle the
runtime's own torch, on a cluster the module's, in a conda environment its own. Then it makes no
.venv, and checks here that the Python has what the target needs, naming in one line what it
lacks. Only the standard library is used: it reads the installed versions without importing them.
"""
import importlib.metadata
import re
import sys

# The oldest version of each package the code is known to work with, all checked together by
# installing them and running every test (docs/where.md). matplotlib 3.6 cuts a long figure title
# at the figure's edges instead of wrapping it: 3.7 is the oldest that wraps it.
FLOOR = {'torch': '2.9.1', 'torchvision': '0.24.1', 'numpy': '1.24', 'matplotlib': '3.7', 'pytest': '7.4'}


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


def main(argv=None):
    needs = sys.argv[1:] if argv is None else argv
    missing = [package for package in needs if lacks(package)]
    if missing:
        asked = ' '.join(repr(f'{p}>={FLOOR[p]}' if p in FLOOR else p) for p in missing)  # what pip is asked for
        print(f'{sys.executable} lacks what this target needs: {", ".join(lacking(missing))}. Install them '
              f'(pip install {asked}), or leave PY= out to use .venv', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
