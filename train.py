"""Train ResNet-18 on CIFAR-10: one run of the report's study.

    python train.py                                    # the report's baseline: lr 0.01, constant, 300 epochs
    python train.py --epochs 15 --lr 0.1               # one run of the learning-rate sweep
    python train.py --cosine --wd 5e-4 --erase-p 1.0   # the first random-erasing run
    python train.py --epochs 4 --train-subset 4000 --eval-subset 2000   # minutes on a CPU

Every run has its own folder (--out; by default runs/ and a name made from the flags):
    config.json     every flag, the torch version, the device, the git commit
    metrics.jsonl   one JSON line per epoch: epoch, lr, train_loss, train_acc, val_loss, val_acc, seconds
    checkpoint.pt   everything needed to continue the run exactly (--resume), after every epoch
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

import torch
import torch.nn.functional as F

from augment import crop_flip, erase, sample_boxes, sample_crops
from data import DataError, balanced_subset, channel_stats, load_cifar10, normalize, split_for
from model import ResNet18
from schedule import lr_at

EVAL_BATCH = 256  # no activations kept for backward; larger batches measured slower on the CPU
# Channels-last (NHWC) memory: cuDNN's tensor-core convolutions and oneDNN's CPU ones read it
# directly; measured faster than NCHW on both (README, Speed). It changes no result.
MEMORY_FORMAT = torch.channels_last
# Flags that say where a run is, not what it learns: --resume may change them.
WHERE = ('out', 'resume', 'force', 'device', 'data_dir')
# Flags that say how it is computed: --resume keeps the run's own unless they are given again,
# since compiled or deterministic kernels round differently from the others.
HOW = ('compile', 'deterministic')


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
    p.add_argument('--precision', choices=('auto', 'fp32', 'bf16'), default='auto',
                   help='bf16 autocast or plain fp32; auto is bf16 where the hardware computes bf16 natively (default: %(default)s)')
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
        parser.error(f'--device must be auto, cpu, cuda or cuda:N, got {name}')
    if device.type == 'cuda' and not torch.cuda.is_available():
        parser.error(f'--device {name}: this machine has no CUDA GPU that torch can use')
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


def pick_precision(precision, device):
    if precision != 'auto':
        return precision
    if device.type == 'cuda':
        return 'bf16' if torch.cuda.is_bf16_supported() else 'fp32'
    return 'bf16' if device.type == 'cpu' and cpu_computes_bf16() else 'fp32'


def autocast_for(device, precision):
    """bf16 autocast when precision is 'bf16', else a context that changes nothing."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == 'bf16')


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


def train_one_epoch(model, optimizer, batches, n, autocast):
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
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * len(y)
        correct += (logits.argmax(dim=1) == y).sum()
    return loss_sum.item() / n, correct.item() / n


@torch.no_grad()
def evaluate(model, images, labels, mean, std, autocast):
    """Mean loss and accuracy on un-augmented images, with BatchNorm's running statistics."""
    model.eval()
    loss_sum = torch.zeros((), device=images.device)
    correct = torch.zeros((), dtype=torch.int64, device=images.device)
    for x, y in zip(images.split(EVAL_BATCH), labels.split(EVAL_BATCH)):
        with autocast():
            logits = model(normalize(x, mean, std).contiguous(memory_format=MEMORY_FORMAT))
            loss_sum += F.cross_entropy(logits.float(), y, reduction='sum')
        correct += (logits.argmax(dim=1) == y).sum()
    return loss_sum.item() / len(labels), correct.item() / len(labels)


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


def load_checkpoint(path, args, device):
    """The saved state, after checking it belongs to this run: same flags, same kind of device."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        saved_flags, saved_device = state['config'], state['device_type']
    except Exception as e:
        raise RunError(f'{path} is unreadable ({type(e).__name__}: {e}); start over with --force') from None
    if saved_flags != training_flags(args):
        diff = ', '.join(k for k in saved_flags if saved_flags[k] != training_flags(args).get(k))
        raise RunError(f'{path} is from another configuration (differs in: {diff}); start over with --force')
    if saved_device != device.type:
        raise RunError(f'{path} was made on {saved_device}: resume it with --device {saved_device}')
    return state


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    given = given_flags(parser, argv)
    out = args.out or default_out(parser, args)
    if args.resume:  # the run's own flags, from its config.json; flags given here must agree
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
    check_flags(parser, args)
    device = pick_device(parser, args.device)
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


def run(parser, args, out, device, resume_from):
    if args.deterministic:  # cuBLAS needs this set before its first use to be repeatable
        os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')
        torch.use_deterministic_algorithms(True)
    else:  # let cuDNN time its algorithms for these shapes once and keep the fastest
        torch.backends.cudnn.benchmark = True
    precision = pick_precision(args.precision, device)

    # Data: the seeded split, optional class-balanced subsets, statistics of the training split.
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
    # Everything the loop touches moves to the device once.
    val_x, val_y = train_x[val_idx].to(device), train_y[val_idx].to(device)
    train_x, train_y = train_x[train_idx].to(device), train_y[train_idx].to(device)
    test_x, test_y = test_x[test_idx].to(device), test_y[test_idx].to(device)
    mean, std = mean.to(device), std.to(device)

    # Model and optimizer. bf16 autocast runs the convolutions in bf16 (tensor cores on a GPU,
    # AMX on recent Intel CPUs); weights and the optimizer's state stay fp32, so the small
    # updates of a late epoch are not lost to bf16's 8-bit mantissa.
    torch.manual_seed(args.seed)
    model = ResNet18().to(device, memory_format=MEMORY_FORMAT)
    # dynamic=False: one compiled graph per batch shape. Otherwise the epoch's smaller last batch
    # makes it recompile for any shape and use those kernels from then on, and a resumed run,
    # whose first batches run the first graph again, would round differently from the original.
    step_model = torch.compile(model, dynamic=False) if args.compile else model
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.wd)

    autocast = functools.partial(autocast_for, device, precision)
    order_gen = torch.Generator().manual_seed(args.seed)                   # data order, on the CPU
    augment_gen = torch.Generator(device=device).manual_seed(args.seed + 1)  # augmentation, on the device
    history, start = [], 0
    if resume_from:
        state = load_checkpoint(resume_from, args, device)
        model.load_state_dict(state['model'])
        optimizer.load_state_dict(state['optimizer'])
        torch.set_rng_state(state['rng']['torch'].cpu())
        if device.type == 'cuda':
            torch.cuda.set_rng_state_all([s.cpu() for s in state['rng']['cuda']])
        order_gen.set_state(state['rng']['order'].cpu())
        augment_gen.set_state(state['rng']['augment'].cpu())
        history, start = state['metrics'], state['epoch']

    # Nothing has been written yet: every check that could refuse the run has passed.
    os.makedirs(out, exist_ok=True)
    if not resume_from:
        for name in ('checkpoint.pt', 'summary.json'):  # --force: the old run goes, config.json is rewritten
            if os.path.exists(os.path.join(out, name)):
                os.remove(os.path.join(out, name))
        write_json(os.path.join(out, 'config.json'), {
            'flags': vars(args) | {'out': out}, 'precision_used': precision, 'torch': torch.__version__,
            'device': str(device), 'device_name': torch.cuda.get_device_name(device) if device.type == 'cuda'
            else platform.processor() or platform.machine(), 'git_commit': git_commit(),
            'python': platform.python_version(), 'started': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
            'sizes': {'train': len(train_y), 'val': len(val_y), 'test': len(test_y)},
            'mean': mean.tolist(), 'std': std.tolist()})
    # metrics.jsonl holds exactly the epochs of the checkpoint: a kill between the two writes of
    # an epoch would otherwise leave a line the resumed run writes again.
    metrics_path = os.path.join(out, 'metrics.jsonl')
    write_atomic(metrics_path, lambda f: f.write(''.join(json.dumps(m) + '\n' for m in history).encode()))
    print(f'{out}: {len(train_y)} training, {len(val_y)} validation, {len(test_y)} test images; '
          f'{device} {precision}; epoch {start + 1} of {args.epochs}', flush=True)

    for epoch in range(start, args.epochs):
        t0 = time.perf_counter()
        lr = lr_at(epoch, args.epochs, args.lr, args.cosine)
        for group in optimizer.param_groups:
            group['lr'] = lr
        batches = training_batches(train_x, train_y, mean, std, args, order_gen, augment_gen)
        train_loss, train_acc = train_one_epoch(step_model, optimizer, batches, len(train_y), autocast)
        val_loss, val_acc = evaluate(step_model, val_x, val_y, mean, std, autocast)
        metrics = {'epoch': epoch + 1, 'lr': lr, 'train_loss': train_loss, 'train_acc': train_acc,
                   'val_loss': val_loss, 'val_acc': val_acc, 'seconds': time.perf_counter() - t0}
        history.append(metrics)
        with open(metrics_path, 'a') as f:
            f.write(json.dumps(metrics) + '\n')
        rng = {'torch': torch.get_rng_state(), 'order': order_gen.get_state(), 'augment': augment_gen.get_state(),
               'cuda': torch.cuda.get_rng_state_all() if device.type == 'cuda' else []}
        state = {'config': training_flags(args), 'device_type': device.type, 'epoch': epoch + 1,
                 'model': model.state_dict(), 'optimizer': optimizer.state_dict(), 'rng': rng, 'metrics': history}
        write_atomic(os.path.join(out, 'checkpoint.pt'), lambda f: torch.save(state, f))
        print(f'epoch {epoch + 1:3d}/{args.epochs}  lr {lr:.5f}  train loss {train_loss:.4f} acc {100 * train_acc:6.2f}%  '
              f'val loss {val_loss:.4f} acc {100 * val_acc:6.2f}%  {metrics["seconds"]:.1f}s', flush=True)

    # The one look at the test set, after training is over.
    test_loss, test_acc = evaluate(step_model, test_x, test_y, mean, std, autocast)
    last = history[-1]
    summary = {'epochs': args.epochs, 'train_loss': last['train_loss'], 'train_acc': last['train_acc'],
               'val_loss': last['val_loss'], 'val_acc': last['val_acc'], 'test_loss': test_loss, 'test_acc': test_acc,
               'seconds': sum(m['seconds'] for m in history)}
    write_json(os.path.join(out, 'summary.json'), summary)
    print(f'test loss {test_loss:.4f} acc {100 * test_acc:.2f}%  ({out}/summary.json)')


if __name__ == '__main__':
    main()
