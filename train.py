"""Train ResNet-18 on CIFAR-10: one run of the report's study.

    python train.py                                    # the report's baseline: lr 0.01, constant, 300 epochs
    python train.py --epochs 15 --lr 0.1               # one run of the learning-rate sweep
    python train.py --cosine --wd 5e-4 --erase-p 1.0   # the first random-erasing run
    python train.py --epochs 4 --train-subset 4000 --eval-subset 2000   # minutes on a CPU
    python train.py --precision fp16                   # what --precision auto picks on a T4 or a V100

Every run has its own folder (--out; by default runs/ and a name made from the flags):
    config.json     every flag (--precision as auto picked it), the torch version, the device, its
                    name and CUDA compute capability, the git commit
    metrics.jsonl   one JSON line per epoch: epoch, lr, train_loss, train_acc, val_loss, val_acc, seconds
    checkpoint.pt   everything needed to continue the run exactly (--resume), after every epoch
    predictions.pt  the final predicted class of every validation and test image, by index
    summary.json    the final training, validation and test loss and accuracy

Settings are chosen on the validation split; the test set is evaluated once, after the last
epoch, and its numbers are only reported (see data.py for why).
"""
import argparse
import functools
import json
import math
import os
import platform
import subprocess
import sys
import time
from typing import NamedTuple

import torch
import torch.nn.functional as F

from augment import crop_flip, erase, sample_boxes, sample_crops
from data import DataError, balanced_subset, channel_stats, load_cifar10, normalize, split_for
from model import ResNet18
from schedule import lr_at

PRECISIONS = ('auto', 'fp32', 'bf16', 'fp16')
HALF = {'bf16': torch.bfloat16, 'fp16': torch.float16}  # autocast's dtype for each half precision
EVAL_BATCH = 256  # no activations kept for backward; larger batches measured slower on the CPU
# Channels-last (NHWC) memory: cuDNN's tensor-core convolutions and oneDNN's CPU ones read it
# directly; measured faster than NCHW on both (README, Speed). It changes no result.
MEMORY_FORMAT = torch.channels_last
# Flags that say where a run is, not what it learns: --resume may change them.
WHERE = ('out', 'resume', 'force', 'device', 'data_dir')
# Flags that say how it is computed: --resume keeps the run's own unless they are given again,
# since compiled or deterministic kernels round differently from the others.
HOW = ('compile', 'deterministic')


def training_batches(images, labels, mean, std, args, order_gen, augment_gen):
    """One epoch of shuffled, augmented, normalised batches, made on the device the images are on.

    The whole split is already on the device (40,000 images are 123 MB of uint8), so a batch is
    one index into it, and each augmentation is a few tensor operations on the whole batch:
    no DataLoader, no worker processes, no Python per image."""
    order = torch.randperm(len(labels), generator=order_gen).to(images.device)
    for idx in order.split(args.batch_size):
        x, y = images[idx], labels[idx]                       # (B, 3, 32, 32) uint8, (B,)
        if not args.no_crop_flip:  # crop and flip before normalising, so the padding is black
            x = crop_flip(x, *sample_crops(len(x), 4, augment_gen))
        x = normalize(x, mean, std)                           # (B, 3, 32, 32) float
        if args.erase_p > 0:  # after normalising: the fill value 0 is the training set's mean colour
            x = erase(x, *sample_boxes(len(x), 32, 32, args.erase_p, args.erase_scale, args.erase_ratio, augment_gen))
        yield x, y


def train_one_epoch(model, optimizer, scaler, batches, n, autocast):
    """SGD over one epoch's batches. Returns the mean training loss and accuracy, on augmented images.

    Loss and correct counts are summed on the device and read once at the end: an .item() per
    step would make the CPU wait for the GPU at every step."""
    model.train()
    loss_sum = torch.zeros((), device=next(model.parameters()).device)
    correct = torch.zeros((), dtype=torch.int64, device=loss_sum.device)
    for x, y in batches:
        with autocast():
            logits = model(x.contiguous(memory_format=MEMORY_FORMAT))
            loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        # In fp16 the scaler multiplies the loss, so the gradients too, by a large power of two
        # before backward, divides them again inside the step, and skips a step whose gradients
        # overflowed. In fp32 and bf16 it is switched off and these are plain backward and step.
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        loss_sum += loss.detach() * len(y)
        correct += (logits.argmax(dim=1) == y).sum()
    return loss_sum.item() / n, correct.item() / n


@torch.no_grad()
def evaluate(model, images, labels, mean, std, autocast):
    """Mean loss and accuracy on un-augmented images, with BatchNorm's running statistics, and the
    predicted class of every image (int8, on the device)."""
    model.eval()
    loss_sum = torch.zeros((), device=images.device)
    predictions = []
    for x, y in zip(images.split(EVAL_BATCH), labels.split(EVAL_BATCH)):
        with autocast():
            logits = model(normalize(x, mean, std).contiguous(memory_format=MEMORY_FORMAT))
            loss_sum += F.cross_entropy(logits.float(), y, reduction='sum')
        predictions.append(logits.argmax(dim=1).to(torch.int8))
    predictions = torch.cat(predictions)
    return loss_sum.item() / len(labels), (predictions == labels).sum().item() / len(labels), predictions


def with_progress(batches, total):
    """The batches, unchanged. On a terminal it also keeps one line rewritten in place while they
    are used: batches done, images per second and the time the epoch has left. Into a file or a
    pipe it prints nothing, so that logs keep one line per epoch."""
    if not sys.stdout.isatty():
        yield from batches
        return
    start = shown = time.perf_counter()
    images = 0
    for done, (x, y) in enumerate(batches, 1):
        yield x, y  # the loop trains on it; we resume when it asks for the next
        images += len(y)
        now = time.perf_counter()
        if done == 1 or now - shown > 0.5:  # a few times a second is enough to read
            left = (total - done) * (now - start) / done
            print(f'\r  batch {done}/{total}  {images / (now - start):,.0f} images/s  '
                  f'{int(left) // 60}:{int(left) % 60:02d} left ', end='', flush=True)
            shown = now
    print('\r\033[K', end='', flush=True)  # clear the line for the epoch's summary


def run(parser, args, out, device, resume_from):
    if args.deterministic:  # cuBLAS needs this set before its first use to be repeatable
        os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')
        torch.use_deterministic_algorithms(True)
    else:  # let cuDNN time its algorithms for these shapes once and keep the fastest
        torch.backends.cudnn.benchmark = True
    train, val, test, mean, std = load_splits(parser, args, device)
    model, step_model, optimizer, scaler = build(args, device)
    order_gen = torch.Generator().manual_seed(args.seed)                     # data order, on the CPU
    augment_gen = torch.Generator(device=device).manual_seed(args.seed + 1)  # augmentation, on the device
    history, val_pred = [], None
    if resume_from:
        history, val_pred = restore(resume_from, args, device, model, optimizer, scaler, order_gen, augment_gen)
    metrics_path = open_run_folder(out, args, device, history, sizes=(len(train.y), len(val.y), len(test.y)),
                                   mean=mean, std=std, resumed=bool(resume_from))
    autocast = functools.partial(autocast_for, device, args.precision)

    for epoch in range(len(history), args.epochs):
        t0 = time.perf_counter()
        lr = lr_at(epoch, args.epochs, args.lr, args.cosine)
        for group in optimizer.param_groups:
            group['lr'] = lr
        batches = training_batches(train.x, train.y, mean, std, args, order_gen, augment_gen)
        batches = with_progress(batches, total=math.ceil(len(train.y) / args.batch_size))
        train_loss, train_acc = train_one_epoch(step_model, optimizer, scaler, batches, len(train.y), autocast)
        val_loss, val_acc, val_pred = evaluate(step_model, val.x, val.y, mean, std, autocast)
        metrics = {'epoch': epoch + 1, 'lr': lr, 'train_loss': train_loss, 'train_acc': train_acc,
                   'val_loss': val_loss, 'val_acc': val_acc, 'seconds': time.perf_counter() - t0}
        history.append(metrics)
        with open(metrics_path, 'a') as f:
            f.write(json.dumps(metrics) + '\n')
        save_checkpoint(out, args, device, model, optimizer, scaler, order_gen, augment_gen, history, val_pred)
        print(f'epoch {epoch + 1:3d}/{args.epochs}  lr {lr:.5f}  train loss {train_loss:.4f} acc {100 * train_acc:6.2f}%  '
              f'val loss {val_loss:.4f} acc {100 * val_acc:6.2f}%  {metrics["seconds"]:.1f}s', flush=True)

    # The one look at the test set, after training is over.
    test_loss, test_acc, test_pred = evaluate(step_model, test.x, test.y, mean, std, autocast)
    save_predictions(out, {'val': (val, val_pred), 'test': (test, test_pred)})
    last = history[-1]
    summary = {'epochs': args.epochs, 'train_loss': last['train_loss'], 'train_acc': last['train_acc'],
               'val_loss': last['val_loss'], 'val_acc': last['val_acc'], 'test_loss': test_loss, 'test_acc': test_acc,
               'seconds': sum(m['seconds'] for m in history)}
    write_json(os.path.join(out, 'summary.json'), summary)  # last: a run with a summary is finished
    print(f'test loss {test_loss:.4f} acc {100 * test_acc:.2f}%  ({out}/summary.json)')


# ---------------------------------------------------------------------------------------------
# Setting a run up: its data, its model and optimizer, its folder and checkpoints.


class Split(NamedTuple):
    x: torch.Tensor    # (N, 3, 32, 32) uint8 images, on the run's device
    y: torch.Tensor    # (N,) int64 labels, on the run's device
    idx: torch.Tensor  # (N,) each image's index in CIFAR-10's training set (or, for test, its test set)


def load_splits(parser, args, device):
    """The seeded split, optional class-balanced subsets, and the statistics of the training split.
    Everything the loop touches moves to the device here, once."""
    train_x, train_y, test_x, test_y = load_cifar10(args.data_dir)
    train_idx, val_idx = split_for(train_y, args.seed)
    test_idx = torch.arange(len(test_y))
    mean, std = channel_stats(train_x[train_idx])
    for flag, n, available in (('--train-subset', args.train_subset, len(train_idx)),
                               ('--eval-subset', args.eval_subset, min(len(val_idx), len(test_idx)))):
        if n is not None and n > available:
            parser.error(f'{flag} {n} is more than the {available} images there are')
    if args.train_subset:
        train_idx = balanced_subset(train_idx, train_y, args.train_subset)
    if args.eval_subset:
        val_idx = balanced_subset(val_idx, train_y, args.eval_subset)
        test_idx = balanced_subset(test_idx, test_y, args.eval_subset)
    split = lambda x, y, idx: Split(x[idx].to(device), y[idx].to(device), idx)
    return (split(train_x, train_y, train_idx), split(train_x, train_y, val_idx), split(test_x, test_y, test_idx),
            mean.to(device), std.to(device))


def build(args, device):
    """The model (and its compiled form, which shares its weights), SGD, and fp16's GradScaler.

    Half-precision autocast runs the convolutions in bf16 or fp16 (tensor cores on a GPU, AMX on
    recent Intel CPUs); weights and the optimizer's state stay fp32, so the small updates of a late
    epoch are not lost to a 16-bit mantissa. fp16 also needs the scaler: its smallest number is
    6e-8 (bf16's is 1e-38, fp32's range), and small gradients would round to zero without it.

    SGD is fused: one kernel updates every weight and takes the scaler's scale and overflow flag
    as tensors, so skipping an fp16 step needs no host sync. With the default SGD, GradScaler
    reads the flag with .item() at every step, and the CPU waits for the GPU each time.
    The momentum buffers start at zero, which makes the first step buf = grad as in plain SGD;
    the fused kernel would create them uninitialised, and if the first step overflows it is
    skipped and keeps that garbage (torch 2.14; tests/test_train.py checks the two paths agree)."""
    torch.manual_seed(args.seed)
    model = ResNet18().to(device, memory_format=MEMORY_FORMAT)
    # dynamic=False: one compiled graph per batch shape. Otherwise the epoch's smaller last batch
    # makes it recompile for any shape and use those kernels from then on, and a resumed run,
    # whose first batches run the first graph again, would round differently from the original.
    step_model = torch.compile(model, dynamic=False) if args.compile else model
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.wd, fused=True)
    if args.momentum:
        for p in model.parameters():
            optimizer.state[p]['momentum_buffer'] = torch.zeros_like(p)
    scaler = torch.amp.GradScaler(device.type, enabled=args.precision == 'fp16')
    return model, step_model, optimizer, scaler


def open_run_folder(out, args, device, history, sizes, mean, std, resumed):
    """Create the run's folder (a fresh run: config.json; an old run's files go, under --force) and
    its metrics.jsonl holding exactly the epochs of the checkpoint: a kill between the two writes
    of an epoch would otherwise leave a line that the resumed run writes again. Every check that
    could refuse the run has passed before this: nothing is written until here."""
    os.makedirs(out, exist_ok=True)
    if not resumed:
        for name in ('checkpoint.pt', 'predictions.pt', 'summary.json'):
            if os.path.exists(os.path.join(out, name)):
                os.remove(os.path.join(out, name))
        write_json(os.path.join(out, 'config.json'), {
            'flags': vars(args) | {'out': out}, 'torch': torch.__version__, 'device': str(device),
            **describe_device(device), 'git_commit': git_commit(), 'python': platform.python_version(),
            'started': time.strftime('%Y-%m-%dT%H:%M:%S%z'), 'sizes': dict(zip(('train', 'val', 'test'), sizes)),
            'mean': mean.tolist(), 'std': std.tolist()})
    metrics_path = os.path.join(out, 'metrics.jsonl')
    write_atomic(metrics_path, lambda f: f.write(''.join(json.dumps(m) + '\n' for m in history).encode()))
    print(f'{out}: {sizes[0]} training, {sizes[1]} validation, {sizes[2]} test images; '
          f'{device} {args.precision}; epoch {len(history) + 1} of {args.epochs}', flush=True)
    return metrics_path


CHECKPOINT_KEYS = {'config', 'device_type', 'epoch', 'model', 'optimizer', 'scaler', 'rng', 'metrics', 'val_pred'}


def save_checkpoint(out, args, device, model, optimizer, scaler, order_gen, augment_gen, history, val_pred):
    """Everything the next epoch depends on, so that --resume continues exactly: the weights, the
    optimizer's momentum, the fp16 scale, every random generator, the metrics so far, and the last
    validation predictions (for predictions.pt, should the run be killed after its last epoch)."""
    rng = {'torch': torch.get_rng_state(), 'order': order_gen.get_state(), 'augment': augment_gen.get_state(),
           'cuda': torch.cuda.get_rng_state(device) if device.type == 'cuda' else None}
    state = {'config': training_flags(args), 'device_type': device.type, 'epoch': len(history),
             'model': model.state_dict(), 'optimizer': optimizer.state_dict(), 'scaler': scaler.state_dict(),
             'rng': rng, 'metrics': history, 'val_pred': val_pred.cpu()}
    write_atomic(os.path.join(out, 'checkpoint.pt'), lambda f: torch.save(state, f))


def restore(path, args, device, model, optimizer, scaler, order_gen, augment_gen):
    """Load a checkpoint into the run, after checking it belongs to it: same flags, same kind of
    device. Returns the metrics so far and the last validation predictions."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:
        raise RunError(f'{path} is unreadable ({type(e).__name__}: {e}); start over with --force') from None
    missing = CHECKPOINT_KEYS - set(state)
    if missing:
        raise RunError(f'{path} has no {", ".join(sorted(missing))}: it is from an older train.py; start over with --force')
    saved_flags, saved_device = state['config'], state['device_type']
    if saved_flags != training_flags(args):
        diff = ', '.join(k for k in saved_flags if saved_flags[k] != training_flags(args).get(k))
        raise RunError(f'{path} is from another configuration (differs in: {diff}); start over with --force')
    if saved_device != device.type:
        raise RunError(f'{path} was made on {saved_device}: resume it with --device {saved_device}')
    model.load_state_dict(state['model'])
    optimizer.load_state_dict(state['optimizer'])
    scaler.load_state_dict(state['scaler'])
    torch.set_rng_state(state['rng']['torch'].cpu())
    if device.type == 'cuda':
        torch.cuda.set_rng_state(state['rng']['cuda'].cpu(), device)
    order_gen.set_state(state['rng']['order'].cpu())
    augment_gen.set_state(state['rng']['augment'].cpu())
    return state['metrics'], state['val_pred'].to(device)


def save_predictions(out, splits):
    """predictions.pt: for each split, every image's index, true class and predicted class, so
    that two runs can be compared image by image (report.py, McNemar's test). 10,000 images take
    100 kB: int64 indices, int8 classes."""
    write_atomic(os.path.join(out, 'predictions.pt'), lambda f: torch.save({
        name: {'index': split.idx, 'label': split.y.to(torch.int8).cpu(), 'pred': pred.cpu()}
        for name, (split, pred) in splits.items()}, f))


# ---------------------------------------------------------------------------------------------
# Flags, devices and files.


class RunError(Exception):
    """A run cannot start or continue; the message says why and what to do."""


class Parser(argparse.ArgumentParser):
    def error(self, message):
        """Bad input: one line and exit status 2, as argparse does, without the usage block."""
        self.exit(2, f'{self.prog}: error: {message} (see --help)\n')


def build_parser():
    p = Parser(prog='train.py', description='Train ResNet-18 on CIFAR-10. With no flags: the report\'s baseline.')
    p.add_argument('--lr', type=float, default=0.01, help='initial learning rate (default: %(default)s)')
    p.add_argument('--epochs', type=int, default=300, help='epochs to train (default: %(default)s)')
    p.add_argument('--batch-size', type=int, default=128, help='training batch size (default: %(default)s)')
    p.add_argument('--momentum', type=float, default=0.9, help='SGD momentum (default: %(default)s)')
    p.add_argument('--cosine', action='store_true', help='cosine annealing to 0, set once per epoch (default: constant lr)')
    p.add_argument('--wd', type=float, default=0.0, help='weight decay (default: %(default)s)')
    p.add_argument('--erase-p', type=float, default=0.0, help='random-erasing probability; 0 turns it off (default: %(default)s)')
    p.add_argument('--erase-scale', type=float, nargs=2, default=[0.02, 0.33], metavar=('LO', 'HI'),
                   help='range of the erased fraction of the image (default: 0.02 0.33)')
    p.add_argument('--erase-ratio', type=float, nargs=2, default=[0.3, 3.3], metavar=('LO', 'HI'),
                   help='range of the erased rectangle\'s aspect ratio (default: 0.3 3.3)')
    p.add_argument('--no-crop-flip', action='store_true', help='turn off the standard random crop and flip (default: on)')
    p.add_argument('--seed', type=int, default=0, help='seed of the split, the weights and the data order (default: %(default)s)')
    p.add_argument('--train-subset', type=int, default=None, metavar='N',
                   help='train on a class-balanced N of the training split, for quick runs (default: all)')
    p.add_argument('--eval-subset', type=int, default=None, metavar='N',
                   help='evaluate on a class-balanced N of the validation and of the test set (default: all)')
    p.add_argument('--precision', choices=PRECISIONS, default='auto',
                   help='bf16 or fp16 autocast, or plain fp32; auto is the fastest the hardware computes natively '
                        '(README, Precision) (default: %(default)s)')
    p.add_argument('--compile', action='store_true', help='torch.compile the model (default: off)')
    p.add_argument('--deterministic', action='store_true', help='deterministic CUDA kernels: repeatable, slower (default: off)')
    p.add_argument('--data-dir', default='data', help='folder holding cifar-10-batches-py (default: %(default)s)')
    p.add_argument('--out', default=None, help='folder of this run (default: runs/ and a name made from the flags)')
    p.add_argument('--device', default='auto', help='auto, cpu, cuda or cuda:N (default: auto, cuda when available)')
    p.add_argument('--resume', action='store_true',
                   help='continue the run in --out from its checkpoint, with its own flags (--compile included)')
    p.add_argument('--force', action='store_true', help='start over in an --out that already holds a run, deleting it')
    return p


def given_flags(parser, argv):
    """The flags written on the command line, as {dest: value}, without the defaults:
    argparse leaves alone every attribute that the namespace it fills already has."""
    unset = object()
    names = vars(parser.parse_args(argv))
    given = parser.parse_args(argv, argparse.Namespace(**dict.fromkeys(names, unset)))
    return {name: value for name, value in vars(given).items() if value is not unset}


def check_flags(parser, args):
    """Every number in range, or one line naming the flag and exit status 2."""
    lo, hi = args.erase_scale
    rlo, rhi = args.erase_ratio
    rules = [
        (math.isfinite(args.lr) and args.lr > 0, f'--lr must be a positive number, got {args.lr}'),
        (args.epochs > 0, f'--epochs must be positive, got {args.epochs}'),
        (args.batch_size > 0, f'--batch-size must be positive, got {args.batch_size}'),
        (math.isfinite(args.momentum) and args.momentum >= 0, f'--momentum must be 0 or more, got {args.momentum}'),
        (math.isfinite(args.wd) and args.wd >= 0, f'--wd must be 0 or more, got {args.wd}'),
        (0 <= args.erase_p <= 1, f'--erase-p must be within [0, 1], got {args.erase_p}'),
        (0 < lo <= hi <= 1, f'--erase-scale must be LO HI with 0 < LO <= HI <= 1, got {lo} {hi}'),
        (0 < rlo <= rhi < math.inf, f'--erase-ratio must be LO HI with 0 < LO <= HI, got {rlo} {rhi}'),
        (args.train_subset is None or args.train_subset > 0, f'--train-subset must be positive, got {args.train_subset}'),
        (args.eval_subset is None or args.eval_subset > 0, f'--eval-subset must be positive, got {args.eval_subset}'),
        (args.seed >= 0, f'--seed must be 0 or more, got {args.seed}'),
    ]
    for ok, message in rules:
        if not ok:
            parser.error(message)


def training_flags(args):
    """The flags that define what a run learns: what config.json and the checkpoint must agree on."""
    return {k: v for k, v in vars(args).items() if k not in WHERE + HOW}


def default_out(parser, args):
    """runs/ and the flags that differ from the baseline, e.g. runs/lr0.1-epochs15."""
    parts = []
    for name, value in training_flags(args).items():
        flag = name.replace('_', '-')
        if value == parser.get_default(name):
            continue
        elif value is True:
            parts.append(flag)
        elif isinstance(value, list):
            parts.append(flag + '-'.join(str(v) for v in value))
        else:
            parts.append(f'{flag}{value}')
    return os.path.join('runs', '-'.join(parts) or 'baseline')


def pick_device(parser, name):
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ('cpu', 'cuda'):
        parser.error(f'--device must be auto, cpu, cuda or cuda:N, got {name}')
    if device.type == 'cuda' and not torch.cuda.is_available():
        parser.error(f'--device {name}: this machine has no CUDA GPU that torch can use')
    if device.type == 'cuda' and device.index is not None and device.index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        parser.error(f'--device {name}: this machine has {count} CUDA GPU{"s" * (count > 1)}, cuda:0 to cuda:{count - 1}')
    return device


def cpu_computes_bf16():
    """True where the CPU has bf16 matrix instructions (AMX or AVX512-BF16). There bf16 autocast
    measured several times faster than fp32 (README, Speed); elsewhere it is emulated, and slower."""
    try:
        with open('/proc/cpuinfo') as f:
            flags = f.read()
    except OSError:  # not Linux: assume no
        return False
    return 'amx_bf16' in flags or 'avx512_bf16' in flags


def pick_precision(parser, precision, device):
    """The precision a run computes in: the one --precision names, or for auto the fastest that
    the hardware computes natively. A CUDA card's compute capability says which tensor cores it has:
        8.0 and up   A100, RTX 30xx/40xx, L4, H100: bf16 tensor cores; bf16 autocast
        7.x          V100, T4, RTX 20xx: fp16 tensor cores only; fp16 autocast with a GradScaler
        below 7.0    P100, GTX 10xx: no tensor cores; fp32
    AMD GPUs (ROCm, which torch also calls cuda) get bf16; a CPU gets bf16 where it has bf16
    matrix instructions, else fp32. torch.cuda.is_bf16_supported() is no guide: by default it
    also says yes where bf16 is only emulated, as on a T4."""
    on_nvidia = device.type == 'cuda' and not torch.version.hip
    capability = torch.cuda.get_device_capability(device) if on_nvidia else None
    if precision == 'auto':
        if capability:
            return 'bf16' if capability >= (8, 0) else 'fp16' if capability >= (7, 0) else 'fp32'
        return 'bf16' if device.type == 'cuda' or cpu_computes_bf16() else 'fp32'
    if precision == 'bf16' and capability and capability < (8, 0):
        parser.error(f'--precision bf16: the {torch.cuda.get_device_name(device)} (compute capability '
                     f'{capability[0]}.{capability[1]}) has no bf16 tensor cores; use fp16 or auto')
    return precision


def autocast_for(device, precision):
    """bf16 or fp16 autocast for a half precision, else a context that changes nothing."""
    return torch.autocast(device.type, dtype=HALF.get(precision), enabled=precision in HALF)


def describe_device(device):
    """What config.json records of the hardware: its name, and a CUDA card's compute capability."""
    if device.type != 'cuda':
        return {'device_name': platform.processor() or platform.machine(), 'compute_capability': None}
    major, minor = torch.cuda.get_device_capability(device)
    return {'device_name': torch.cuda.get_device_name(device), 'compute_capability': f'{major}.{minor}'}


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


def write_atomic(path, write):
    """write(f) into path.tmp, then rename it over path: a kill at any moment leaves either the
    old file or the new one, never half of one."""
    tmp = path + '.tmp'
    with open(tmp, 'wb') as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path, obj):
    write_atomic(path, lambda f: f.write((json.dumps(obj, indent=1) + '\n').encode()))


def prepare_out(parser, args, out):
    """Decide what to do with the run folder before anything is written into it.
    Returns the checkpoint to resume from, or None to start afresh."""
    if os.path.exists(out) and not os.path.isdir(out):
        parser.error(f'--out {out} is a file, not a folder')
    checkpoint, summary = os.path.join(out, 'checkpoint.pt'), os.path.join(out, 'summary.json')
    holds_run = os.path.exists(checkpoint) or os.path.exists(summary)
    if args.resume:
        if os.path.exists(summary):
            print(f'{out} is finished (summary.json): nothing to resume')
            sys.exit(0)
        if not os.path.exists(checkpoint):
            parser.error(f'{out} has no checkpoint.pt to resume; start the run without --resume')
        return checkpoint
    if holds_run and not args.force:
        parser.error(f'{out} already holds a run: add --resume to continue it, or --force to start over')
    return None


def take_saved_flags(parser, args, given, out):
    """--resume: the run's own flags, from its config.json. Flags given again must agree with them,
    except those of WHERE; those of HOW keep the run's values unless given again."""
    try:
        with open(os.path.join(out, 'config.json')) as f:
            saved = json.load(f)['flags']
    except FileNotFoundError:
        parser.error(f'nothing to resume in {out}: it has no config.json')
    except (OSError, ValueError, KeyError) as e:
        parser.error(f'cannot resume: {out}/config.json is unreadable ({e})')
    clash = [k for k in training_flags(args) if k in given and given[k] != saved.get(k)]
    if clash:
        parser.error(f'--resume uses the flags the run in {out} was started with; '
                     f'--{clash[0].replace("_", "-")} {given[clash[0]]} differs from its {saved.get(clash[0])}')
    vars(args).update({k: saved[k] for k in training_flags(args) if k in saved})
    vars(args).update({k: saved[k] for k in HOW if k in saved and k not in given})


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    out = args.out or default_out(parser, args)
    if args.resume:
        take_saved_flags(parser, args, given_flags(parser, argv), out)
    check_flags(parser, args)
    device = pick_device(parser, args.device)
    # auto becomes what it picked here, and is saved so: a run resumed on other hardware keeps it.
    args.precision = pick_precision(parser, args.precision, device)
    resume_from = prepare_out(parser, args, out)
    try:
        run(parser, args, out, device, resume_from)
    except (DataError, RunError) as e:
        sys.exit(f'{parser.prog}: error: {e}')
    except KeyboardInterrupt:  # Ctrl-C: the epoch in progress is lost, the last finished one is on disk
        if os.path.exists(os.path.join(out, 'checkpoint.pt')):
            print(f'\nstopped: {out}/checkpoint.pt holds the last finished epoch; '
                  f'to continue: python train.py --resume --out {out}', file=sys.stderr)
        else:
            print('\nstopped before the first epoch ended, nothing to resume: run the same command again', file=sys.stderr)
        sys.exit(130)


if __name__ == '__main__':
    main()
