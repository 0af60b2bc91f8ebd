"""The flags of a run, each declared once, in FLAGS: its name, default, help, valid range and kind.

A run's settings are its flags (python train.py --lr 0.1 --cosine). Everything else about a flag
follows from its line in FLAGS: train.py's parser and its check of the values, what --resume takes
from a run's config.json (bookkeeping/runs.py), the command line make writes for a setting of
study.toml, a run's default folder, and how a run departs from the setting it was meant to be
(departures), in one wording for make's check, the tables, the verdicts and Figure 10.

A flag is of one of two kinds:

    LEARNS    it changes what a run learns, and so is part of the run: config.json and the checkpoint
              must agree on it, --resume takes it from config.json, make compares it with what a
              target asks, and a run's default folder is named after it. The precision is one:
              rounding to 16 bits changes the path training takes.
    COMPUTES  where or how the run computes, which may change when it resumes. A `kept` one keeps
              the run's own value on --resume unless given again: compiled or deterministic kernels
              round in the last bits differently from the others, and the resume would not be exact.

A new knob is a line here, then its use in train.py's loop (docs/extending.md). This module needs
only the standard library: make reads the study's command lines through it before torch is installed.
"""
import argparse
import math
import os
from typing import NamedTuple

LEARNS, COMPUTES = 'learns', 'computes'
PRECISIONS = ('auto', 'fp32', 'bf16', 'fp16')  # bookkeeping/hardware.py says which a card computes, and auto's pick

# Valid ranges: a test of the value, and what the value must be, for the error.
POSITIVE = (lambda v: math.isfinite(v) and v > 0, 'a positive number')
POSITIVE_INT = (lambda v: v > 0, 'positive')
NOT_NEGATIVE = (lambda v: math.isfinite(v) and v >= 0, '0 or more')
PROBABILITY = (lambda v: 0 <= v <= 1, 'within [0, 1]')
AREA_RANGE = (lambda v: 0 < v[0] <= v[1] <= 1, 'LO HI with 0 < LO <= HI <= 1')
RATIO_RANGE = (lambda v: 0 < v[0] <= v[1] < math.inf, 'LO HI with 0 < LO <= HI')


class Flag(NamedTuple):
    name: str             # as typed: '--erase-p'; train.py reads it as args.erase_p
    default: object       # False makes it a switch; a list of two, a range LO HI
    help: str             # ends with its default, unless it says it
    kind: str             # LEARNS or COMPUTES
    valid: tuple = None   # (test, what it must be), or None: any value of its type
    type: type = None     # where the default does not say it (None)
    kept: bool = False    # COMPUTES: --resume keeps the run's own value unless given again
    choices: tuple = None
    metavar: object = None

    @property
    def dest(self):
        return self.name[2:].replace('-', '_')


FLAGS = (
    # What the run learns: the report's baseline by default (lr 0.01, constant, 300 epochs).
    Flag('--lr', 0.01, 'initial learning rate', LEARNS, POSITIVE),
    Flag('--epochs', 300, 'epochs to train', LEARNS, POSITIVE_INT),
    Flag('--batch-size', 128, 'training batch size', LEARNS, POSITIVE_INT),
    Flag('--momentum', 0.9, 'SGD momentum', LEARNS, NOT_NEGATIVE),
    Flag('--cosine', False, 'cosine annealing towards 0, set once per epoch (default: constant lr)', LEARNS),
    Flag('--wd', 0.0, 'weight decay', LEARNS, NOT_NEGATIVE),
    Flag('--erase-p', 0.0, 'random-erasing probability; 0 turns it off', LEARNS, PROBABILITY),
    Flag('--erase-scale', [0.02, 0.33], 'range of the erased fraction of the image', LEARNS, AREA_RANGE,
         metavar=('LO', 'HI')),
    Flag('--erase-ratio', [0.3, 3.3], "range of the erased rectangle's aspect ratio", LEARNS, RATIO_RANGE,
         metavar=('LO', 'HI')),
    Flag('--no-crop-flip', False, 'turn off the standard random crop and flip (default: off: crop and flip on)', LEARNS),
    Flag('--seed', 0, 'seed of the split, the weights, the data order and the augmentations', LEARNS, NOT_NEGATIVE),
    Flag('--train-subset', None, 'train on a class-balanced N of the training split, for quick runs (default: all)',
         LEARNS, POSITIVE_INT, type=int, metavar='N'),
    Flag('--eval-subset', None, 'evaluate on a class-balanced N of the validation and of the test set (default: all)',
         LEARNS, POSITIVE_INT, type=int, metavar='N'),
    Flag('--precision', 'auto', 'bf16 or fp16 autocast, or plain fp32; auto is the fastest the hardware computes '
         'natively (bookkeeping/hardware.py)', LEARNS, choices=PRECISIONS),
    # How and where it computes.
    Flag('--compile', False, 'torch.compile the model (default: off)', COMPUTES, kept=True),
    Flag('--deterministic', False, 'deterministic CUDA kernels: repeatable, slower (default: off)', COMPUTES, kept=True),
    Flag('--data-dir', 'data', 'folder holding cifar-10-batches-py', COMPUTES),
    Flag('--out', None, 'folder of this run (default: runs/ and a name made from the flags)', COMPUTES, type=str),
    Flag('--device', 'auto', 'auto, cpu, cuda or cuda:N (default: auto, cuda when available)', COMPUTES),
    Flag('--gpu-pool', None, 'take one of these GPUs that no other run of this project holds, waiting for one if need '
         'be (make GPUS=...) (default: no pool; the GPUs that CUDA_VISIBLE_DEVICES shows)', COMPUTES, type=list,
         metavar='GPU'),
    Flag('--resume', False, 'continue the run in --out from its checkpoint, with its own flags (--compile included)',
         COMPUTES),
    Flag('--force', False, 'start over in an --out that already holds a run, deleting it', COMPUTES),
)
BY_NAME = {flag.dest: flag for flag in FLAGS}
DEFAULTS = {flag.dest: flag.default for flag in FLAGS}
TRAINING = tuple(flag.dest for flag in FLAGS if flag.kind == LEARNS)  # what a run is
KEPT_ON_RESUME = tuple(flag.dest for flag in FLAGS if flag.kept)


class BadFlag(ValueError):
    """A flag that cannot be, or cannot be here; the message says which and why, in one line."""


class Parser(argparse.ArgumentParser):
    def error(self, message):
        """Bad input: one line and exit status 2, as argparse does, without the usage block."""
        self.exit(2, f'{self.prog}: error: {message} (see --help)\n')


def parser():
    """train.py's command line, from FLAGS."""
    p = Parser(prog='train.py', description="Train ResNet-18 on CIFAR-10. With no flags: the report's baseline.")
    for flag in FLAGS:
        add(p, flag.dest)
    return p


def bench_parser(description):
    """bench.py's command line: train.py's --device, --precision and --batch-size, as FLAGS declares
    them, and how long to time each pipeline."""
    p = Parser(prog='bench.py', description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in ('device', 'precision', 'batch_size'):
        add(p, name)
    p.add_argument('--steps', type=int, default=None, help='training steps per timed window (default: 50 on CUDA, 4 on CPU)')
    p.add_argument('--windows', type=int, default=None, help='timed windows (default: 5)')
    p.add_argument('--eval-images', type=int, default=None, help='images evaluated (default: 10000 on CUDA, 1000 on CPU)')
    p.add_argument('--compile', action='store_true', help='also time ours with torch.compile')
    return p


def add(p, name):
    """The flag `name` ('erase_p'), as FLAGS declares it, to the argparse parser p (bench.py's too)."""
    flag = BY_NAME[name]
    help = flag.help if '(default' in flag.help else f'{flag.help} (default: {as_written(flag.default)})'
    if flag.default is False:
        p.add_argument(flag.name, action='store_true', help=help)
    elif flag.type is list:
        p.add_argument(flag.name, nargs='+', metavar=flag.metavar, help=help)
    else:
        pair = isinstance(flag.default, list)  # a range: LO HI
        p.add_argument(flag.name, type=flag.type or (float if pair else type(flag.default)), default=flag.default,
                       nargs=2 if pair else None, choices=flag.choices, metavar=flag.metavar, help=help)


def check(args):
    """Every value in its flag's valid range, or a ValueError naming the flag and what it must be."""
    for flag in FLAGS:
        value = getattr(args, flag.dest)
        if flag.valid and value is not None and not flag.valid[0](value):
            raise ValueError(f'{flag.name} must be {flag.valid[1]}, got {as_written(value)}')


def given(argv):
    """The flags written on the command line, as {dest: value}, without the defaults:
    argparse leaves alone every attribute that the namespace it fills already has."""
    unset = object()
    filled = parser().parse_args(argv, argparse.Namespace(**dict.fromkeys(BY_NAME, unset)))
    return {name: value for name, value in vars(filled).items() if value is not unset}


def training(args):
    """The flags that make the run, from train.py's args: {'lr': 0.01, 'epochs': 300, ...}."""
    return {name: getattr(args, name) for name in TRAINING}


def fits(name, value):
    """Whether `value`, read from a config.json, is of the kind of value flag `name` takes:
    True is no number, 1 is a number of --lr, a range is a list of two numbers."""
    flag = BY_NAME[name]
    if isinstance(value, bool) or flag.default is False:
        return isinstance(value, bool) and flag.default is False
    if value is None:
        return flag.default is None
    if isinstance(flag.default, list):
        return isinstance(value, list) and len(value) == 2 and all(type(v) in (int, float) for v in value)
    kind = flag.type or type(flag.default)
    return isinstance(value, (int, float) if kind is float else kind)


def as_written(value):
    """A flag's value as a person writes it: 0.1, on, 0.02 0.33, none."""
    if isinstance(value, bool):
        return 'on' if value else 'off'
    if isinstance(value, list):
        return ' '.join(map(str, value))
    return 'none' if value is None else str(value)


def command_line(values):
    """train.py's command line for some flags' values: {'lr': 0.1, 'cosine': True} is --lr 0.1 --cosine."""
    words = []
    for name, value in values.items():
        flag = '--' + name.replace('_', '-')
        if value is True:
            words.append(flag)
        elif isinstance(value, list):
            words += [flag, *map(str, value)]
        elif value is not False:  # a switch left off is its default
            words += [flag, str(value)]
    return ' '.join(words)


def default_out(args):
    """runs/ and the training flags that differ from their default, e.g. runs/lr0.1-epochs15."""
    parts = []
    for name, value in training(args).items():
        if value == DEFAULTS[name]:
            continue
        flag = name.replace('_', '-')
        parts.append(flag if value is True else flag + as_written(value).replace(' ', '-'))
    return os.path.join('runs', '-'.join(parts) or 'baseline')


def departures(have, want):
    """How a run made with the flags `have` departs from one made with `want`: a phrase per training
    flag that differs, 'epochs 1, not 15'; [] if none does. A flag missing from either has its
    default: a run made before the flag existed had it. Precision auto, wanted, is whatever the
    hardware picked (config.json holds the pick), and so no departure."""
    have, want = DEFAULTS | have, DEFAULTS | want
    return [f'{name.replace("_", "-")} {as_written(have[name])}, not {as_written(want[name])}' for name in TRAINING
            if have[name] != want[name] and not (name == 'precision' and want[name] == 'auto')]
