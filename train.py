"""Train ResNet-18 on CIFAR-10: one run of the study.

    python train.py                                    # the report's baseline: lr 0.01, constant, 300 epochs
    python train.py --epochs 15 --lr 0.1               # one run of the learning-rate sweep
    python train.py --cosine --wd 5e-4 --erase-p 1.0   # the first random-erasing run
    python train.py --epochs 4 --train-subset 4000 --eval-subset 2000   # minutes on a CPU

The file reads top to bottom: the data as batches, the network and SGD, one epoch of SGD,
evaluation, the run epoch by epoch, then main(). Settings are chosen on the validation split;
the test set is evaluated once, after the last epoch, and its numbers are only reported (data.py
says why). The flags are declared in bookkeeping/flags.py; what a run writes and how --resume
continues it is bookkeeping/runs.py's; the device and the precision, bookkeeping/hardware.py's.
"""
import math
import sys
import time

from bookkeeping.environment import needs
needs('torch')  # a Python without it: one line that says which Python, and how to get one
import torch
import torch.nn.functional as F

from augment import crop_flip, erase, sample_boxes, sample_crops
from bookkeeping import flags, hardware, progress, runs
from data import DataError, load_splits, normalize
from model import ResNet18
from schedule import lr_at

EVAL_BATCH = 256  # no activations are kept for backward, so larger batches than training's fit
DIVERGED = 3  # the exit status of a run that diverged: 0 finished, 1 an error, 2 a bad flag, 130 stopped


def training_batches(images, labels, mean, std, batch_size, order_gen, augment_gen,
                     crop_and_flip=True, erase_p=0.0, erase_scale=(0.02, 0.33), erase_ratio=(0.3, 3.3)):
    """One epoch of shuffled, augmented, normalised batches, made on the device the images are on.

    The whole split is already on the device (40,000 images are 123 MB of uint8), so a batch is
    one index into it, and each augmentation is a few tensor operations on the whole batch:
    no DataLoader, no worker processes, no Python per image."""
    order = torch.randperm(len(labels), generator=order_gen).to(images.device)
    for idx in order.split(batch_size):
        x, y = images[idx], labels[idx]                       # (B, 3, 32, 32) uint8, (B,)
        if crop_and_flip:  # before normalising, so that the padding is black
            x = crop_flip(x, *sample_crops(len(x), 4, augment_gen))
        x = normalize(x, mean, std)                           # (B, 3, 32, 32) float
        if erase_p > 0:  # after normalising: the fill value 0 is the training set's mean colour
            x = erase(x, *sample_boxes(len(x), 32, 32, erase_p, erase_scale, erase_ratio, augment_gen))
        yield x, y


def build(seed, lr, momentum, wd, precision, device, compiled=False):
    """ResNet-18 with weights drawn from the run's seed, and SGD with momentum to train it (Sutskever,
    Martens, Dahl and Hinton, "On the importance of initialization and momentum in deep learning",
    2013), in torch's form, which keeps lr out of v. For each weight w with gradient g of the loss:

        g <- g + wd w            weight decay: the gradient of an L2 penalty wd/2 |w|^2 on the loss
        v <- momentum v + g      velocity: past gradients, each older one shrunk by momentum: less noise
        w <- w - lr v            (Sutskever et al. put lr into v: the same while lr is constant)

    Returns the model; the model compiled (--compile; else the model itself), which shares its
    weights; SGD; and fp16's GradScaler, which is off in the other precisions (bookkeeping/hardware.py)."""
    torch.manual_seed(seed)
    # Channels-last weights: the layout tensor cores and oneDNN compute in (bookkeeping/hardware.py says why).
    model = ResNet18().to(device, memory_format=hardware.MEMORY_FORMAT)
    # dynamic=False: one compiled graph per batch shape. Otherwise the epoch's smaller last batch
    # makes it recompile for any shape and use those kernels from then on, and a resumed run,
    # whose first batches run the first graph again, would round differently from the original.
    step_model = torch.compile(model, dynamic=False) if compiled else model
    optimizer = hardware.sgd(model.parameters(), lr=lr, momentum=momentum, weight_decay=wd)  # torch's SGD, fused
    scaler = torch.amp.GradScaler(device.type, enabled=precision == 'fp16')
    return model, step_model, optimizer, scaler


def train_one_epoch(model, optimizer, scaler, batches, autocast):
    """SGD over one epoch's batches, each step lowering the batch's cross-entropy: the mean, over
    its images, of -log(the probability the network's softmax gives the right class). Returns the
    mean training loss and accuracy, on the augmented images.

    The forward pass runs inside `autocast`, the run's precision. The step is torch's AMP recipe:
    in fp16 the scaler multiplies the loss by a large power of two before backward, so that small
    gradients do not vanish, divides them again in the step, and skips a step that overflowed; in
    fp32 and bf16 it is off, and scale, step and update are loss.backward() and optimizer.step().

    Loss and correct counts are summed on the device and read once at the end: an .item() per
    step would make the CPU wait for the GPU at every step."""
    model.train()
    loss_sum = torch.zeros((), device=next(model.parameters()).device)
    correct = torch.zeros((), dtype=torch.int64, device=loss_sum.device)
    counted = torch.zeros((), dtype=torch.int64, device=loss_sum.device)  # images whose batch loss was a number
    images = 0
    for x, y in batches:
        # BEGIN SOLUTION
        with autocast:
            logits = model(x)
            loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        # END SOLUTION
        # The batch's mean loss, back to a sum over its images; left out if it is inf or nan. In fp16
        # the scaler skipped that step, and the run goes on. In fp32 and bf16 the step was taken and
        # the weights are now nan: the validation loss shows it, and train() stops the run.
        finite = torch.isfinite(loss.detach())
        loss_sum += torch.where(finite, loss.detach() * len(y), 0.0)
        counted += finite * len(y)
        correct += (logits.argmax(dim=1) == y).sum()
        images += len(y)
    counted = counted.item()
    return loss_sum.item() / counted if counted else math.nan, correct.item() / images


@torch.no_grad()
def evaluate(model, images, labels, mean, std, autocast):
    """Mean loss and accuracy on un-augmented images, and the predicted class of every image (int8).

    model.eval() makes BatchNorm normalise with the running statistics it gathered in training,
    and leave them alone: with the batch's own statistics an image's class would depend on the
    other images of its batch, and the validation images would leak into the model."""
    # BEGIN SOLUTION
    model.eval()
    loss_sum = torch.zeros((), device=images.device)
    predictions = []
    for x, y in zip(images.split(EVAL_BATCH), labels.split(EVAL_BATCH)):
        with autocast:
            logits = model(normalize(x, mean, std))
        loss_sum += F.cross_entropy(logits.float(), y, reduction='sum')
        predictions.append(logits.argmax(dim=1).to(torch.int8))
    predictions = torch.cat(predictions)
    return loss_sum.item() / len(labels), (predictions == labels).sum().item() / len(labels), predictions
    # END SOLUTION


def train(args, device, resume):
    """The run: epoch by epoch, a learning rate, an epoch of SGD, an evaluation, and a checkpoint.
    Returns how it ended: 'finished', or 'diverged' at an epoch whose loss was no number."""
    train_split, val, test, mean, std = load_splits(args.data_dir, args.seed, device, args.train_subset, args.eval_subset)
    model, step_model, optimizer, scaler = build(args.seed, args.lr, args.momentum, args.wd, args.precision, device,
                                                 args.compile)
    order_gen = torch.Generator().manual_seed(args.seed)                    # the data's order, on the CPU
    augment_gen = torch.Generator(device=device).manual_seed(args.seed + 1)  # its augmentations, on the device
    history, val_pred = [], None
    if resume:
        history, val_pred = runs.restore(args, device, model=model, optimizer=optimizer, scaler=scaler,
                                         order_gen=order_gen, augment_gen=augment_gen)
    else:
        runs.start(args, device, (len(train_split.y), len(val.y), len(test.y)), mean, std)
    todo = f'epoch {len(history) + 1} of {args.epochs}' if len(history) < args.epochs else 'all epochs done: the test set'
    print(f'{args.out}: {len(train_split.y)} training, {len(val.y)} validation, {len(test.y)} test images; '
          f'{device} {args.precision}; {todo}', flush=True)
    autocast = hardware.autocast_for(device, args.precision)  # bf16 or fp16 autocast, or one that changes nothing

    for epoch in range(len(history), args.epochs):
        t0 = time.perf_counter()
        lr = lr_at(epoch, args.epochs, args.lr, args.cosine)
        for group in optimizer.param_groups:
            group['lr'] = lr
        batches = training_batches(train_split.x, train_split.y, mean, std, args.batch_size, order_gen, augment_gen,
                                   crop_and_flip=not args.no_crop_flip, erase_p=args.erase_p,
                                   erase_scale=args.erase_scale, erase_ratio=args.erase_ratio)
        batches = progress.with_progress(batches, total=math.ceil(len(train_split.y) / args.batch_size))
        train_loss, train_acc = train_one_epoch(step_model, optimizer, scaler, batches, autocast)
        val_loss, val_acc, val_pred = evaluate(step_model, val.x, val.y, mean, std, autocast)
        metrics = {'epoch': epoch + 1, 'lr': lr, 'train_loss': train_loss, 'train_acc': train_acc,
                   'val_loss': val_loss, 'val_acc': val_acc, 'seconds': time.perf_counter() - t0}
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)):  # hours more of training would not mend it
            print(runs.save_diverged(args.out, metrics, args.lr), file=sys.stderr)  # make takes the run as ended
            return 'diverged'
        history.append(metrics)
        runs.save_epoch(args, device, metrics, model=model, optimizer=optimizer, scaler=scaler, order_gen=order_gen,
                        augment_gen=augment_gen, history=history, val_pred=val_pred)
        print(f'epoch {epoch + 1:3d}/{args.epochs}  lr {lr:.5f}  train loss {train_loss:.4f} acc {100 * train_acc:6.2f}%  '
              f'val loss {val_loss:.4f} acc {100 * val_acc:6.2f}%  {metrics["seconds"]:.1f}s', flush=True)

    # The one look at the test set, after training is over.
    test_loss, test_acc, test_pred = evaluate(step_model, test.x, test.y, mean, std, autocast)
    runs.finish(args.out, history, test_loss, test_acc, {'val': (val, val_pred), 'test': (test, test_pred)})
    print(f'test loss {test_loss:.4f} acc {100 * test_acc:.2f}%  ({args.out}/summary.json)')
    return 'finished'


def main(argv=None):
    args = flags.parser().parse_args(argv)  # every flag, its default and its range: bookkeeping/flags.py
    with runs.exits(args, errors=(DataError,)):  # each error: one line, and its exit status
        device = runs.settle(args, argv)  # the run's flags, device and precision, before anything is written
        with runs.claimed(args.out, args.resume, args.force) as todo:  # no other process may write the run
            if todo in ('start', 'resume') and train(args, device, resume=todo == 'resume') == 'diverged':
                sys.exit(DIVERGED)  # a result, not an error: make counts the run as ended and goes on


if __name__ == '__main__':
    main()
