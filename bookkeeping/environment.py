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


def lacking(needs):
    """What of `needs` (package names) this Python lacks, each as a phrase: 'pytest', 'torch 2.9.1
    or later (it has 2.1.0)'."""
    said = []
    for package in needs:
        try:
            have = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            said.append(package if package not in FLOOR else f'{package} {FLOOR[package]} or later')
            continue
        if package in FLOOR and as_numbers(have) < as_numbers(FLOOR[package]):
            said.append(f'{package} {FLOOR[package]} or later (it has {have})')
    return said


def main(argv=None):
    needs = sys.argv[1:] if argv is None else argv
    missing = lacking(needs)
    if missing:
        print(f'{sys.executable} lacks what this target needs: {", ".join(missing)}. Install them '
              f'(pip install {" ".join(repr(m.split(" (")[0].replace(" or later", "").replace(" ", ">=")) for m in missing)}), '
              f'or leave PY= out to use .venv', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
