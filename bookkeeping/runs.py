"""A run's folder: what a run writes, how it continues after an interruption, and how it is read back.

Every run has a folder of its own (train.py --out), and this module is the one place that knows
its format. train.py writes it; report.py reads it.

    config.json     every flag (--precision as auto picked it), the sizes of the splits and the
                    training mean and std, the torch version, the device and the machine, the git commit
    metrics.jsonl   one JSON line per finished epoch: epoch, lr, train_loss, train_acc, val_loss, val_acc, seconds
    checkpoint.pt   everything the next epoch depends on, rewritten after every epoch
    predictions.pt  the final predicted class of every validation and test image, by index
    summary.json    the final numbers; written last, so a folder with a summary holds a finished run
                    (or one that diverged, which says at which epoch)
    lock            held by the process that trains the run (locks.py), so that no other writes it

A folder with a checkpoint and no summary holds an interrupted run, which `--resume` continues
exactly: the resumed run's metrics and weights are those of the run never interrupted. That
takes the same flags, so --resume reads those that make the run from config.json (flags.py), and the
checkpoint must hold every state that changes from step to step: the weights, SGD's momentum,
fp16's loss scale, and the random generators of the data order and of the augmentations.

Files are replaced atomically (write_atomic): a kill at any moment leaves the old file or the
new one, never half of one, and so does a disk that fills up.

"""
import contextlib
import datetime
import errno
import io
import json
import os
import platform
import signal
import subprocess
import sys
from typing import NamedTuple

import torch

from bookkeeping import flags, hardware, locks

CHECKPOINT_KEYS = {'config', 'device_type', 'epoch', 'model', 'optimizer', 'scaler', 'rng', 'metrics', 'val_pred'}
LOCK = 'lock'


class RunError(Exception):
    """A run cannot start or continue; the message says why and what to do."""


MENDED_BY_RESUME = ('metrics.jsonl', 'predictions.pt', 'summary.json')  # remade from the checkpoint (restore, finish)


class Damaged(RunError):
    """A file of a run folder that is not what train.py writes there; str() is the one line to show."""

    def __init__(self, folder, name, what):
        self.folder, self.name, self.what = str(folder), name, what
        if os.path.isdir(os.path.join(folder, name)):  # nothing deletes a folder but its owner
            todo = f'a folder stands where the file should: move {os.path.join(folder, name)} away'
        elif name in MENDED_BY_RESUME and os.path.isfile(os.path.join(folder, 'checkpoint.pt')):
            todo = f'python train.py --resume --out {folder} remakes it from the checkpoint'
        elif name == LOCK:
            todo = f'delete {os.path.join(folder, LOCK)} once no process trains the run'
        else:
            todo = f'python train.py --force ... --out {folder} starts the run over, or delete the folder'
        super().__init__(f'{folder}: {name} {what}; {todo}')


# ---------------------------------------------------------------------------------------------
# Reading runs back. A file may be damaged after it was written (a full disk or a quota elsewhere,
# a copy killed half-way, an edit by hand): whatever reads it names the folder, the file, what is
# wrong and what to do, in one line (Damaged), and a reader of a whole study leaves that run out
# and goes on with the others.

# What each file's JSON holds, as train.py writes it: each number a number.
METRICS_KEYS = ('epoch', 'lr', 'train_loss', 'train_acc', 'val_loss', 'val_acc', 'seconds')
SUMMARY_KEYS = ('epochs', 'train_loss', 'train_acc', 'val_loss', 'val_acc', 'test_loss', 'test_acc', 'seconds')
DIVERGED_KEYS = ('diverged_at', 'train_loss', 'val_loss')


def read(folder):
    """A run's files as written: {'folder', 'config', 'metrics', 'summary', 'predictions'}; the
    summary is None while the run is unfinished, the predictions (of the validation images) too.
    None unless it has config.json and at least one line of metrics. Damaged if a file is not as
    train.py writes it."""
    run = {'folder': folder, 'config': read_config(folder), 'metrics': read_metrics(folder),
           'summary': read_summary(folder), 'predictions': read_predictions(folder)}
    if run['config'] is None and (run['metrics'] or run['summary'] or os.path.exists(os.path.join(folder, 'checkpoint.pt'))):
        raise Damaged(folder, 'config.json', 'is missing')  # train.py writes it before anything else
    if run['summary'] and not run['metrics']:
        raise Damaged(folder, 'metrics.jsonl', 'is missing')
    ran = (run['summary'] or {}).get('epochs')  # a finished run's; a file cut at the end of a line reads whole
    if ran is not None and len(run['metrics']) != ran:
        raise Damaged(folder, 'metrics.jsonl', f'holds {len(run["metrics"])} of the {ran} epochs summary.json counts')
    return run if run['config'] and run['metrics'] else None


def read_checked(folder):
    """Every file of a run folder that a reader of the study reads is as train.py wrote it: the
    JSON files and the predictions are read through, and the checkpoint and the lock must be files,
    not folders. Damaged if one is not. Returns read(folder)."""
    for name in ('checkpoint.pt', LOCK):
        if os.path.lexists(os.path.join(folder, name)) and not os.path.isfile(os.path.join(folder, name)):
            raise Damaged(folder, name, 'is not a file')
    return read(folder)


def read_json(folder, name):
    """A JSON file of the run folder, parsed; None if there is none."""
    try:
        with open(os.path.join(folder, name), 'rb') as f:
            text = f.read().decode()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:  # a folder of that name, random bytes
        raise Damaged(folder, name, f'cannot be read ({e.strerror if isinstance(e, OSError) else "not text"})') from None
    if not text.strip():
        raise Damaged(folder, name, 'is empty')
    try:
        obj = json.loads(text)
    except ValueError as e:
        cut = not text.rstrip().endswith('}')  # train.py's JSON files are objects: they end with }
        raise Damaged(folder, name, 'is cut short' if cut else f'is not JSON ({e.msg})') from None
    if not isinstance(obj, dict):  # train.py writes an object in each
        raise Damaged(folder, name, f'holds {json.dumps(obj)[:40]}, not an object')
    return obj


def numbers(folder, name, obj, keys):
    """obj, if it is a JSON object that has a number under each of keys (nan and inf are numbers)."""
    if not isinstance(obj, dict):
        raise Damaged(folder, name, f'holds {type(obj).__name__}, not an object')
    for key in keys:
        if not isinstance(obj.get(key), (int, float)) or isinstance(obj.get(key), bool):
            raise Damaged(folder, name, f'has no number under "{key}"' + (f' but {obj[key]!r}' if key in obj else ''))
    return obj


def read_config(folder):
    """config.json: the run's flags, each of its kind (flags.fits), and its split sizes."""
    config = read_json(folder, 'config.json')
    if config is None:
        return None
    if not isinstance(config, dict) or not isinstance(config.get('flags'), dict):
        raise Damaged(folder, 'config.json', 'has no "flags" object')
    for name, value in config['flags'].items():
        if name in flags.TRAINING and not flags.fits(name, value):
            raise Damaged(folder, 'config.json', f'has {value!r} for --{name.replace("_", "-")}')
    numbers(folder, 'config.json', config.get('sizes'), ('train', 'val', 'test'))
    return config


def read_metrics(folder):
    """metrics.jsonl as a list of dicts, a line each; [] if there is none yet."""
    try:
        with open(os.path.join(folder, 'metrics.jsonl'), 'rb') as f:
            lines = f.read().decode().splitlines(keepends=True)
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as e:
        raise Damaged(folder, 'metrics.jsonl', f'cannot be read ({e.strerror if isinstance(e, OSError) else "not text"})') from None
    if not lines:  # train.py writes it with its first epoch's line
        raise Damaged(folder, 'metrics.jsonl', 'is empty')
    rows = []
    for number, line in enumerate(lines, 1):
        try:
            rows.append(numbers(folder, 'metrics.jsonl', json.loads(line), METRICS_KEYS))
        except (ValueError, Damaged) as e:
            cut = number == len(lines) and not line.endswith('\n')  # the last line, and no end to it
            raise Damaged(folder, 'metrics.jsonl', f'line {number} ' + ('is cut short' if cut else 'is not a line of metrics'
                          + (f' ({e.what})' if isinstance(e, Damaged) else ''))) from None
    if [row['epoch'] for row in rows] != list(range(1, len(rows) + 1)):
        raise Damaged(folder, 'metrics.jsonl', 'does not hold epochs 1, 2, 3... in order')
    return rows


def read_summary(folder):
    """summary.json: a finished run's final numbers, or the epoch at which it diverged; None if none."""
    summary = read_json(folder, 'summary.json')
    if summary is None:
        return None
    return numbers(folder, 'summary.json', summary, DIVERGED_KEYS if 'diverged_at' in summary else SUMMARY_KEYS)


def read_predictions(folder):
    """The validation predictions a finished run saved, as {'index', 'label', 'pred'}, or None."""
    path = os.path.join(folder, 'predictions.pt')
    if not os.path.lexists(path):
        return None
    try:
        val = torch.load(path, weights_only=True)['val']
        if not (isinstance(val, dict) and all(isinstance(val.get(k), torch.Tensor) for k in ('index', 'label', 'pred'))
                and len(val['index']) == len(val['label']) == len(val['pred'])):
            raise ValueError('not the predictions of a run')
    except Exception as e:  # torch.load's errors are of every kind: cut short, not a zip, a folder...
        why = (str(e).splitlines() or [''])[0][:80]
        raise Damaged(folder, 'predictions.pt', f'cannot be read ({type(e).__name__}{": " * bool(why)}{why})') from None
    return val


class Found(NamedTuple):
    """What a study's runs folder holds for one setting: its runs, and the damaged ones left out."""
    runs: list       # read()'s dicts
    left_out: list   # Damaged, one per run folder left out


def collect(runs_dir, the_study):
    """For each setting of the study, by its key: its runs, RUNS/experiment/folder/seedN, in the
    order of N, and those left out because a file of theirs is damaged (each named in one line)."""
    found = {}
    for setting in the_study.settings():
        top = os.path.join(runs_dir, setting.experiment, setting.folder)
        seeds = sorted((d for d in (os.listdir(top) if os.path.isdir(top) else []) if d[4:].isdigit() and d.startswith('seed')),
                       key=lambda d: int(d[4:]))
        setting_runs, damaged = [], []
        for seed in seeds:
            try:
                run = read(os.path.join(top, seed))
            except Damaged as e:
                print(f'left out: {e}')
                damaged.append(e)
                continue
            if run:
                setting_runs.append(run)
        if not setting_runs and not damaged:
            print(f'skipped: {setting.experiment}, {setting.label}: no run in {top}/')
        found[setting.key] = Found(setting_runs, damaged)
    return found


# ---------------------------------------------------------------------------------------------
# Claiming a run's folder: one process at a time, and what --resume and --force do with what it holds.


def take_saved_flags(args, given):
    """--resume: the run's own flags, from its config.json, into args. A flag that makes the run,
    given again, must agree with the run's; those kept on resume keep the run's values unless given
    again (flags.py). A flag that config.json lacks, one added after the run started, has its default, as then."""
    config = read_config(args.out)  # Damaged, a RunError, if it is not as train.py wrote it
    if config is None:
        raise ValueError(f'nothing to resume in {args.out}: it has no config.json')
    saved = flags.DEFAULTS | config['flags']
    clash = [k for k in flags.TRAINING if k in given and given[k] != saved[k]]
    if clash:
        raise ValueError(f'--resume uses the flags the run in {args.out} was started with; '
                         f'--{clash[0].replace("_", "-")} {given[clash[0]]} differs from its {saved[clash[0]]}')
    vars(args).update({k: saved[k] for k in flags.TRAINING})
    vars(args).update({k: saved[k] for k in flags.KEPT_ON_RESUME if k in saved and k not in given})


def state(out):
    """'finished' or 'diverged' (it has a summary), 'interrupted' (a checkpoint and no summary), or
    'not started'. Whether a process is training it now, only its lock can say. Damaged if its
    summary.json is."""
    summary = read_summary(out)
    if summary is not None:
        return 'diverged' if 'diverged_at' in summary else 'finished'
    return 'interrupted' if os.path.exists(os.path.join(out, 'checkpoint.pt')) else 'not started'


class Held(NamedTuple):
    """What a run folder holds, as examine() tells it."""
    state: str          # 'not started', 'interrupted', 'finished', 'diverged', or 'damaged'
    departures: list    # how its run departs from the flags asked for: 'epochs 1, not 15', a phrase each
    damaged: Damaged    # what is damaged, and what to do (str), if its state is 'damaged'; else None
    holder: str         # 'pid N on HOST' of the process that trains it now; else None
    run: dict           # its files as read(), or None before its first epoch


def examine(folder, asked=None):
    """Is this folder the run that was asked for, and in what state? The one answer, which make's
    check (runner/checks.py), make status (runner/status.py), Slurm's submission (runner/slurm.py),
    make seeds and train.py's --resume and --force (decide, below) all ask here. Every file a
    reader of the study reads must be as train.py wrote it, or the state is 'damaged'; with
    `asked`, train.py's training flags (a dict), the departures say how the run it holds differs."""
    holder = locks.holder(os.path.join(folder, LOCK)) if os.path.isfile(os.path.join(folder, LOCK)) else None
    try:
        run = read_checked(folder)
        config = read_config(folder)
        found = state(folder)
    except Damaged as e:
        return Held('damaged', [], e, holder, None)
    departures = flags.departures(config['flags'], asked) if asked is not None and config else []
    return Held(found, departures, None, holder, run)


@contextlib.contextmanager
def claimed(out, resume, force):
    """The run's folder, this process's alone until the block ends: no other process can start,
    resume or --force the run meanwhile. Yields what to do: 'start', 'resume', or, for --resume of
    an ended run, 'finished' or 'diverged'. RunError if the folder is taken or does not fit the flags.
    A folder made here, in which nothing was written, is removed again at the end."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise RunError(f'--out {out} is a file, not a folder')
    made = not os.path.exists(out)
    os.makedirs(out, exist_ok=True)
    try:
        lock = locks.acquire(os.path.join(out, LOCK))
    except OSError as e:  # a folder where the lock file should be, say
        raise Damaged(out, LOCK, f'cannot be locked ({e.strerror})') from None
    if lock is None:
        raise RunError(f'{out} is being trained by {locks.holder(os.path.join(out, LOCK)) or "another process"}; '
                       f'wait for it, or stop that process first')
    try:
        yield decide(out, resume, force)
    finally:
        if made and os.listdir(out) == [LOCK]:
            os.remove(os.path.join(out, LOCK))
            os.rmdir(out)
        locks.release(lock)


def decide(out, resume, force):
    """What --resume and --force do with the run the folder holds (examine). --resume of a finished
    run whose summary.json, metrics.jsonl or predictions.pt is damaged remakes them from its
    checkpoint, which holds every epoch's metrics and the final weights."""
    held = examine(out)
    found, e = held.state, held.damaged
    if e:
        if force:
            return 'start'
        if not (resume and e.name in MENDED_BY_RESUME and os.path.isfile(os.path.join(out, 'checkpoint.pt'))
                and not os.path.isdir(os.path.join(out, e.name))):
            raise e
        print(f'{e.folder}: {e.name} {e.what}: remade from the checkpoint', flush=True)
        return 'resume'
    if resume:
        if found == 'not started':
            raise RunError(f'{out} has no checkpoint.pt to resume; start the run without --resume')
        if found != 'interrupted':
            print(f'{out} has {found} (summary.json): nothing to resume')
        return 'resume' if found == 'interrupted' else found
    if found != 'not started' and not force:
        raise RunError(f'{out} already holds a run: add --resume to continue it, or --force to start over')
    return 'start'


# ---------------------------------------------------------------------------------------------
# Writing files whole: the process may be killed, and the disk may fill up, at any moment.


def write_atomic(path, data):
    """The bytes `data` into path.tmp, then renamed over path: a kill at any moment leaves either
    the old file or the new one, never half of one. A disk that fills up, or a quota reached,
    leaves the old file too, and no path.tmp to keep the disk full: one RunError says so."""
    tmp = path + '.tmp'
    try:
        with open(tmp, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise out_of_space(path, len(data)) from None
        raise


def append(path, text):
    """A line at the end of a file (metrics.jsonl); out of space, the same RunError as write_atomic.
    A line cut short by a full disk is mended on --resume, which rewrites the file from the checkpoint."""
    try:
        with open(path, 'a') as f:
            f.write(text)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise out_of_space(path, len(text)) from None
        raise


def out_of_space(path, size):
    folder, name = os.path.split(path)
    checkpoint = os.path.join(folder, 'checkpoint.pt')
    need = size if name == 'checkpoint.pt' else os.path.getsize(checkpoint) if os.path.exists(checkpoint) else None
    size = f'{need / 2 ** 20:.1f} MB' if need and need >= 2 ** 20 else f'{(need or 0) / 2 ** 10:.0f} kB'
    needs = f'; a checkpoint of this run needs {size}, twice that while the new one replaces the old' if need else ''
    resume = f'python train.py --resume --out {folder}' if os.path.exists(checkpoint) else 'the same command again'
    return RunError(f'no space left in {folder} to write {name}{needs}. Its last finished epoch is on disk: '
                    f'free some space, then {resume}')


def serialized(obj):
    """torch.save's bytes: made in memory first, so that a full disk fails in write_atomic, and
    the message can say how much space the checkpoint needs."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def write_json(path, obj):
    write_atomic(path, (json.dumps(obj, indent=1) + '\n').encode())


# ---------------------------------------------------------------------------------------------
# A run, written epoch by epoch: its config, its checkpoints and metrics, its summary.


def start(args, device, sizes, mean, std):
    """A fresh run's folder: an earlier run's files go (--force), config.json is written."""
    os.makedirs(args.out, exist_ok=True)
    for name in ('checkpoint.pt', 'predictions.pt', 'summary.json', 'metrics.jsonl'):
        if os.path.exists(os.path.join(args.out, name)):
            os.remove(os.path.join(args.out, name))
    write_json(os.path.join(args.out, 'config.json'), {
        'flags': vars(args), 'torch': torch.__version__, 'device': str(device), **hardware.describe(device),
        'git_commit': git_commit(), 'python': platform.python_version(), 'started': now(),
        'sizes': dict(zip(('train', 'val', 'test'), sizes)), 'mean': mean.tolist(), 'std': std.tolist()})


def save_epoch(args, device, metrics, **state):
    """After an epoch: its checkpoint (checkpoint(), of the `state` train.py names: model,
    optimizer, scaler, order_gen, augment_gen, history, val_pred), then its line of metrics.jsonl.
    A kill between the two leaves a checkpoint one epoch ahead, which restore() mends."""
    write_atomic(os.path.join(args.out, 'checkpoint.pt'), serialized(checkpoint(args, device, **state)))
    append(os.path.join(args.out, 'metrics.jsonl'), json.dumps(metrics) + '\n')


def save_diverged(out, metrics, lr):
    """An epoch whose loss is nan or inf: its line of metrics, and a summary that says so. A run
    with a summary has ended: make does not start it again, report.py shows it as diverged, and
    only --force starts it over. The checkpoint keeps the last epoch whose losses were numbers.
    Returns what to tell the user."""
    append(os.path.join(out, 'metrics.jsonl'), json.dumps(metrics) + '\n')
    write_json(os.path.join(out, 'summary.json'), {'diverged_at': metrics['epoch'], 'train_loss': metrics['train_loss'],
                                                   'val_loss': metrics['val_loss'], 'finished': now()})
    return (f'{out} diverged at epoch {metrics["epoch"]}: training loss {metrics["train_loss"]}, validation loss '
            f'{metrics["val_loss"]}; try a lower --lr than {lr}. Its summary.json says so; --force starts it over')


def checkpoint(args, device, *, model, optimizer, scaler, order_gen, augment_gen, history, val_pred):
    """Everything the next epoch depends on, so that --resume continues exactly, and the last
    validation predictions (for predictions.pt, should the run be killed after its last epoch)."""
    # Nothing else draws random numbers: torch's global generators seed the weights, and are
    # left alone after that (tests/test_train.py checks), so they need no saving.
    rng = {'order': order_gen.get_state(), 'augment': augment_gen.get_state()}
    return {'config': flags.training(args), 'device_type': device.type, 'epoch': len(history),
            'model': model.state_dict(), 'optimizer': optimizer.state_dict(), 'scaler': scaler.state_dict(),
            'rng': rng, 'metrics': history, 'val_pred': val_pred.cpu()}


def restore(args, device, *, model, optimizer, scaler, order_gen, augment_gen):
    """Load the checkpoint into the run, after checking it belongs to it: the same training flags,
    the same kind of device. Rewrites metrics.jsonl to hold exactly the checkpoint's epochs.
    Returns the metrics so far and the last validation predictions."""
    path = os.path.join(args.out, 'checkpoint.pt')
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:
        raise RunError(f'{path} is unreadable ({type(e).__name__}: {e}); start over with --force') from None
    missing = CHECKPOINT_KEYS - set(state)
    if missing:
        raise RunError(f'{path} has no {", ".join(sorted(missing))}: it is from an older train.py; start over with --force')
    # A flag the checkpoint lacks was added to train.py after it was saved: the run has its default (take_saved_flags).
    diff = ', '.join(k for k, v in state['config'].items() if flags.training(args).get(k) != v)
    if diff:
        raise RunError(f'{path} is from another configuration (differs in: {diff}); start over with --force')
    if state['device_type'] != device.type:
        raise RunError(f'{path} was made on {state["device_type"]}: resume it with --device {state["device_type"]}')
    model.load_state_dict(state['model'])
    optimizer.load_state_dict(state['optimizer'])
    scaler.load_state_dict(state['scaler'])
    order_gen.set_state(state['rng']['order'].cpu())
    augment_gen.set_state(state['rng']['augment'].cpu())
    write_atomic(os.path.join(args.out, 'metrics.jsonl'), ''.join(json.dumps(m) + '\n' for m in state['metrics']).encode())
    return state['metrics'], state['val_pred'].to(device)


def finish(out, history, test_loss, test_acc, splits):
    """predictions.pt, then summary.json, last: a run with a summary is finished. The summary holds
    the last epoch's numbers, the test set's, and the time the epochs took.

    predictions.pt has, for each split, every image's index, true class and predicted class, so
    that two runs can be compared image by image (report.py, McNemar's test). 10,000 images take
    100 kB: int64 indices, int8 classes."""
    write_atomic(os.path.join(out, 'predictions.pt'), serialized({
        name: {'index': split.idx, 'label': split.y.to(torch.int8).cpu(), 'pred': pred.cpu()}
        for name, (split, pred) in splits.items()}))
    last = history[-1]
    write_json(os.path.join(out, 'summary.json'), {
        'epochs': len(history), **{k: last[k] for k in ('train_loss', 'train_acc', 'val_loss', 'val_acc')},
        'test_loss': test_loss, 'test_acc': test_acc, 'seconds': sum(m['seconds'] for m in history), 'finished': now()})


# ---------------------------------------------------------------------------------------------
# train.py as a program: the run's settings settled, and how it ends.


def settle(args, argv):
    """The run's flags, device and precision, settled before anything is written: --resume takes
    the run's own flags (take_saved_flags); each flag is checked against its range; --gpu-pool
    takes a GPU before torch looks for CUDA; --device auto picks the device afresh each time
    (config.json records the one each run had), while --precision auto becomes the precision it
    picked, and is saved so, so that a run resumed on other hardware keeps it; --deterministic
    chooses the kernels. Returns the device; a flag that cannot be is flags.BadFlag."""
    args.out = args.out or flags.default_out(args)
    try:
        if args.resume:
            take_saved_flags(args, flags.given(argv))
        flags.check(args)
        if args.gpu_pool:
            hardware.take_gpu(args.gpu_pool)
        device = hardware.pick_device(args.device)
    except ValueError as e:
        raise flags.BadFlag(str(e)) from None
    args.precision = hardware.pick_precision(args.precision, device, run=args.resume and args.out)
    hardware.set_determinism(args.deterministic)
    return device


@contextlib.contextmanager
def exits(args, errors=()):
    """How train.py ends, in one place: each error in one line, without a traceback, and its exit
    status (0 finished, 3 diverged, which train.py says itself):
        2    a flag that cannot be (flags.BadFlag), or bf16 asked of a GPU without it (NotNative)
        1    a run folder or a data set that will not do (RunError, `errors`), or a resumed run's
             own precision that this GPU cannot compute (NotNative)
        130  Ctrl-C, kill's SIGTERM or Slurm's at a time limit: the epoch in progress is lost, and
             it says where the last finished one is and how to continue
    Meanwhile SIGTERM (kill's, and Slurm's at a time limit, preemption or requeue) stops the run as
    Ctrl-C does, and output piped into a program that ends (| head) ends it quietly, as any Unix tool."""
    handlers = signal.signal(signal.SIGTERM, signal.default_int_handler), signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    parser = flags.parser()
    try:
        yield
    except flags.BadFlag as e:
        parser.error(str(e))
    except hardware.NotNative as e:
        parser.exit(1 if args.resume else 2, f'{parser.prog}: error: {e}\n')
    except (RunError, *errors) as e:
        sys.exit(f'{parser.prog}: error: {e}')
    except KeyboardInterrupt:
        print(f'\nstopped: {how_to_continue(args.out)}', file=sys.stderr)
        sys.exit(130)
    finally:
        signal.signal(signal.SIGTERM, handlers[0])
        signal.signal(signal.SIGPIPE, handlers[1])


def how_to_continue(out):
    """What a stopped run tells its user: where its last finished epoch is, and the command that
    continues from there."""
    found = state(out) if os.path.isdir(out) else 'not started'
    if found == 'interrupted':
        return f'{out}/checkpoint.pt holds the last finished epoch; to continue: python train.py --resume --out {out}'
    if found == 'not started':
        return 'before the first epoch ended, nothing to resume: run the same command again'
    return f'{out} is as it was: its run has {found}'


def now():
    return datetime.datetime.now().astimezone().isoformat(timespec='milliseconds')


def git_commit():
    """The commit this code is at, with -dirty if it has uncommitted changes; 'unknown' outside git."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=here, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'], cwd=here,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return 'unknown'
    return commit + ('-dirty' if dirty else '')
