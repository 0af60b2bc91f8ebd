"""What the tests share: tiny CIFAR-10 stand-ins written in the official on-disk format, so the
tests run the real loading code without the real data set or a network; TinyNet, a stand-in for
ResNet-18 where it is too slow; and train.py run in a process of its own."""
import json
import math
import os
import pickle
import shutil
import signal
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# A stand-in for ResNet-18 where it is too slow: conv, BatchNorm, ReLU, global average pool, linear.
# It lives with the worker that runs a student's code at grading (course/apart.py), which builds one
# when a test hands it to a student's function.
from course.worker import TinyNet  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: whole ResNet-18 runs in processes of their own, torch.compile, several '
                                       'runs at once, a Slurm cluster; make test-quick leaves these out')
    config.addinivalue_line('markers', 'exercise(name, ...): the exercises of the handout the test needs (handout.py)')


# The exercises of the handout (handout.py) that a run of train.py needs, with TinyNet for ResNet-18:
# the split and its statistics, crop and flip, an epoch of SGD, evaluation; cosine_lr too with --cosine,
# and BasicBlock.forward with ResNet-18. A test marked with them is graded with each (its "with others").
A_RUN = ('balanced_split', 'channel_stats', 'crop_flip', 'train_one_epoch', 'evaluate')

CUDA = pytest.mark.skipif(not torch.cuda.is_available(),
                          reason='no CUDA GPU here: `make test` on a GPU machine runs the CUDA path')
DEVICES = ['cpu', pytest.param('cuda', marks=CUDA)]  # the devices a test about a device runs on

PER_CLASS = 5  # images of each class in each of the six batch files: 250 training, 50 test images
# A colour per class (0-127 in each channel), added to noise: a network can learn the classes.
PALETTE = torch.tensor([[0, 0, 0], [127, 0, 0], [0, 127, 0], [0, 0, 127], [127, 127, 0], [127, 0, 127],
                        [0, 127, 127], [127, 127, 127], [64, 0, 127], [127, 64, 0]], dtype=torch.uint8)


def write_batch(path, images, labels, str_keys=False):
    """One batch file as the official ones are laid out: 'data' rows of 3072 bytes (R, G, B planes)."""
    key = (lambda k: k) if str_keys else (lambda k: k.encode())
    batch = {key('batch_label'): key('fake batch'), key('labels'): [int(v) for v in labels],
             key('data'): images.reshape(len(images), -1).numpy(),
             key('filenames'): [key(f'{i}.png') for i in range(len(labels))]}
    with open(path, 'wb') as f:
        pickle.dump(batch, f, protocol=2)


def make_cifar(root, str_keys=False, seed=0, tint=True):
    """root/cifar-10-batches-py/ with five training batches and a test batch of random images, each
    tinted with its class's colour unless not `tint`. Returns what was written: train_x, train_y,
    test_x, test_y."""
    g = torch.Generator().manual_seed(seed)
    folder = os.path.join(root, 'cifar-10-batches-py')
    os.makedirs(folder, exist_ok=True)
    written = []
    for name in ['data_batch_1', 'data_batch_2', 'data_batch_3', 'data_batch_4', 'data_batch_5', 'test_batch']:
        labels = torch.arange(10).repeat(PER_CLASS)[torch.randperm(10 * PER_CLASS, generator=g)]
        noise = torch.randint(0, 128, (len(labels), 3, 32, 32), dtype=torch.uint8, generator=g)
        images = noise + PALETTE[labels][:, :, None, None] * tint  # learnable: each class has its own tint
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


# train.py with TinyNet in place of ResNet-18, in a process of its own: SIGTERM stops it as Ctrl-C, as it does train.py.
WITH_TINY_NET = ('import signal, sys; sys.path[:0] = [{!r}, {!r}]; import train; from conftest import TinyNet; '
                 'train.ResNet18 = TinyNet; signal.signal(signal.SIGTERM, signal.default_int_handler); '
                 'train.main(sys.argv[1:])').format(ROOT, os.path.join(ROOT, 'tests'))


# make, running its recipes for real, with the Python that runs the tests: it leaves .venv alone
# (-o: take it as made), so the tests run the same in a clone that has none.
MAKE = ['make', '-s', '-C', ROOT, '-o', '.venv/installed', f'PY={sys.executable}']


def project_copy(folder):
    """The project's files in `folder`, to be edited by a test, and make's command line for it."""
    shutil.copytree(ROOT, folder, ignore=shutil.ignore_patterns('.git', '.venv', 'data', 'runs', 'runs-*', 'figures',
                                                                '.gpus', '__pycache__', '.pytest_cache'))
    return [*MAKE[:MAKE.index('-C')], '-C', str(folder), *MAKE[MAKE.index('-C') + 2:]]


def train_py(*args, wait=True, tiny=False, env=None):
    """train.py in a process of its own, with its arguments; with TinyNet for ResNet-18 if tiny.
    wait=False returns the running process, with SIGINT at its default, as a terminal's would be
    (a background job of the shell that runs the tests would have it ignored)."""
    cmd = [sys.executable, *(['-c', WITH_TINY_NET] if tiny else [os.path.join(ROOT, 'train.py')]), *args]
    env = os.environ | (env or {})
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)


def one_line_error(capsys, argv, status=2):
    """Run train.main(argv) in this process; the one line it wrote to stderr, after checking its
    exit status and that it is one line, without a traceback."""
    import train
    with pytest.raises(SystemExit) as exit_info:
        train.main(argv)
    err = capsys.readouterr().err.strip() or str(exit_info.value.code)
    code = exit_info.value.code if isinstance(exit_info.value.code, int) else 1
    assert code == status and len(err.splitlines()) == 1 and 'Traceback' not in err, err
    return err


def metrics(out):
    """A run's metrics.jsonl, a dict per epoch."""
    with open(os.path.join(out, 'metrics.jsonl')) as f:
        return [json.loads(line) for line in f]


def without_seconds(rows):
    return [{k: v for k, v in row.items() if k != 'seconds'} for row in rows]


def snapshot(folder):
    """Every file of a folder and its bytes: to show that nothing was changed."""
    return {name: open(os.path.join(folder, name), 'rb').read() for name in sorted(os.listdir(folder))}


# The flags in config.json of lr-sweep's lr 0.01 run, at the report's setting: a run folder written by hand starts from them.
REPORT_FLAGS = {'lr': 0.01, 'epochs': 15, 'batch_size': 128, 'momentum': 0.9, 'cosine': False, 'wd': 0.0,
                'erase_p': 0.0, 'erase_scale': [0.02, 0.33], 'erase_ratio': [0.3, 3.3], 'no_crop_flip': False,
                'seed': 0, 'train_subset': None, 'eval_subset': None, 'precision': 'bf16'}


def write_run(folder, flags=None, val_accs=(0.5,), sizes=None, summary=True, right=None):
    """A run folder as train.py leaves it: config.json, a metrics line per epoch (validation
    accuracy as given, other numbers made up), summary.json if finished, and predictions.pt if
    `right` says which of the validation images it got right."""
    flags = REPORT_FLAGS | (flags or {})
    sizes = sizes or {'train': 40000, 'val': 10000, 'test': 10000}
    os.makedirs(folder)
    rows = [{'epoch': e + 1, 'lr': flags['lr'], 'train_loss': 1.0 / (e + 1), 'train_acc': acc + 0.05,
             'val_loss': 1.5 / (e + 1), 'val_acc': acc, 'seconds': 1.0} for e, acc in enumerate(val_accs)]
    with open(os.path.join(folder, 'config.json'), 'w') as f:
        json.dump({'flags': flags, 'sizes': sizes}, f)
    if summary == 'diverged':  # as train.py leaves a run whose loss became nan at its last epoch
        rows[-1] |= {'train_loss': math.nan, 'val_loss': math.nan}
        with open(os.path.join(folder, 'summary.json'), 'w') as f:
            json.dump({'diverged_at': len(rows), 'train_loss': math.nan, 'val_loss': math.nan}, f)
    elif summary:
        with open(os.path.join(folder, 'summary.json'), 'w') as f:
            json.dump({'epochs': len(rows)} | {k: rows[-1][k] for k in ('train_loss', 'train_acc', 'val_loss', 'val_acc')}
                      | {'test_loss': 0.7, 'test_acc': val_accs[-1] - 0.01, 'seconds': float(len(rows))}, f)
    with open(os.path.join(folder, 'metrics.jsonl'), 'w') as f:
        f.writelines(json.dumps(row) + '\n' for row in rows)
    if right is not None:
        n = len(right)
        label = torch.arange(n, dtype=torch.int8) % 10
        pred = torch.where(torch.tensor(right), label, (label + 1) % 10).to(torch.int8)
        torch.save({'val': {'index': torch.arange(n), 'label': label, 'pred': pred}}, os.path.join(folder, 'predictions.pt'))
    return rows
