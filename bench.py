"""How fast is a training epoch? This project's pipeline against the plain one, measured.

    python bench.py --compile       # on CUDA if there is a GPU, else on the CPU (make bench)
    python bench.py --device cpu --precision fp32 --steps 2 --windows 3   # fp32, and shorter

Both pipelines train the same ResNet-18 with SGD at batch size 128 (--batch-size), with the same augmentation
distributions (random crop from the image padded by 4, horizontal flip, random erasing with
p 1.0 as in the report's erasing runs), on synthetic CIFAR-shaped images: no data set needed.

  ours   train.py's own code: the images resident on the device, crop, flip and erasing on
         whole batches there, the precision --precision auto picks (bf16 or fp16 autocast, or
         fp32), channels-last memory, fused SGD, and the loss and accuracy read once per window.
  plain  what most CIFAR repositories do: torchvision transforms on one PIL image at a time in
         a DataLoader with 2 worker processes, fp32, and .item() after every step.

With --compile, ours is also timed with torch.compile (train.py --compile), and the time its
first steps spent compiling is set against the time it saves per epoch.

Each pipeline takes some warm-up steps (not timed; cuDNN autotuning, worker start-up), then
several timed windows of training steps, and as many timed passes of evaluation (in batches of
256 for ours, as train.py evaluates, and of 100 for the plain one). The table gives the median window. A 40k epoch is 40,000 training images and 10,000 validation images.
"""
import statistics
import time

from bookkeeping.environment import needs
needs('torch', 'torchvision')  # a Python without them: one line that says which Python, and how to get them
import torch
import torch.nn.functional as F
import torchvision.transforms as T
from PIL import Image

from bookkeeping import flags, hardware, study, tables
from model import ResNet18
from train import build, evaluate, train_one_epoch, training_batches

STUDY_EPOCHS = study.load().epochs()  # of every run of the study (study.toml): the report's are 3 of 15 and 11 of 300
ERASE = dict(p=1.0, scale=(0.02, 0.33), ratio=(0.3, 3.3))
MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)  # CIFAR-10's, roughly: synthetic data needs some


def synthetic(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g), torch.randint(0, 10, (n,), generator=g)


def median_window(step_window, windows, warmup):
    """Seconds of the median of `windows` calls of step_window(), after `warmup` calls left out of
    it; and the seconds of the first call, which pays for any compilation and autotuning."""
    times = []
    for _ in range(warmup + windows):
        t0 = time.perf_counter()
        step_window()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[warmup:]), times[0]


def bench_ours(device, precision, batch, steps, windows, eval_images, compile_model):
    """Images per second of train.py's training step and of its evaluation."""
    images, labels = (t.to(device) for t in synthetic(steps * batch))
    val_x, val_y = (t.to(device) for t in synthetic(eval_images, seed=1))
    mean, std = torch.tensor(MEAN, device=device), torch.tensor(STD, device=device)
    # train.py's own model, fused SGD and fp16's scaler, with the report's erasing run's settings
    _, step_model, optimizer, scaler = build(0, 0.01, 0.9, 5e-4, precision, device, compiled=compile_model)
    order_gen, augment_gen = torch.Generator().manual_seed(0), torch.Generator(device=device).manual_seed(1)

    autocast = hardware.autocast_for(device, precision)
    def window():  # train_one_epoch reads its sums with .item() at the end: the GPU has finished
        batches = training_batches(images, labels, mean, std, batch, order_gen, augment_gen, erase_p=ERASE['p'],
                                   erase_scale=ERASE['scale'], erase_ratio=ERASE['ratio'])
        train_one_epoch(step_model, optimizer, scaler, batches, autocast)

    train_seconds, first_train = median_window(window, windows, warmup=2)
    eval_seconds, first_eval = median_window(lambda: evaluate(step_model, val_x, val_y, mean, std, autocast), windows, 1)
    start_up = first_train - train_seconds + first_eval - eval_seconds  # compilation, on the first calls
    return steps * batch / train_seconds, eval_images / eval_seconds, start_up


class PILImages(torch.utils.data.Dataset):
    """Images kept as numpy HWC arrays and turned into PIL images one at a time, as torchvision's CIFAR10 does."""

    def __init__(self, images, labels, transform):
        self.images, self.labels, self.transform = images.permute(0, 2, 3, 1).numpy(), labels.tolist(), transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.images[i])), self.labels[i]


def bench_plain(device, batch, steps, windows, eval_images):
    """Images per second of the usual DataLoader pipeline, fp32, and of its evaluation."""
    augment = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(MEAN, STD),
                         T.RandomErasing(**ERASE)])
    train_loader = torch.utils.data.DataLoader(PILImages(*synthetic(steps * batch), augment), batch_size=batch,
                                               shuffle=True, num_workers=2, persistent_workers=True)
    val_loader = torch.utils.data.DataLoader(PILImages(*synthetic(eval_images, seed=1), T.Compose([T.ToTensor(), T.Normalize(MEAN, STD)])),
                                             batch_size=100, num_workers=2, persistent_workers=True)
    torch.manual_seed(0)
    model = ResNet18().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def window():
        model.train()
        total, correct = 0.0, 0
        for x, y in train_loader:
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad()
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            loss.backward()
            optimizer.step()
            total += loss.item()
            correct += (logits.argmax(1) == y).sum().item()

    @torch.no_grad()
    def evaluate_plain():
        model.eval()
        for x, y in val_loader:
            (model(x.to(device)).argmax(1) == y.to(device)).sum().item()

    train_seconds, _ = median_window(window, windows, warmup=1)
    eval_seconds, _ = median_window(evaluate_plain, windows, 1)
    return steps * batch / train_seconds, eval_images / eval_seconds


def pipelines(device, precision, batch, steps, windows, eval_images, compiled):
    """Each pipeline's training and evaluation images per second: ours, ours compiled (if asked),
    then the plain one, last; and the seconds compiling took (None if not asked)."""
    torch.backends.cudnn.benchmark = True  # cuDNN tries its kernels on the first steps, and keeps the fastest
    timed = lambda compile_model: bench_ours(device, precision, batch, steps, windows, eval_images, compile_model)
    rows, compiling = [(f'ours ({precision}, channels-last)', *timed(False)[:2])], None
    if compiled:
        *rates, compiling = timed(True)
        rows.append((f'ours + torch.compile ({precision})', *rates))
    rows.append(('plain (DataLoader, PIL, fp32)', *bench_plain(device, batch, steps, windows, eval_images)))
    return rows, compiling


def compare(rows):
    """For each pipeline of rows (its name, train images/s, eval images/s): its seconds for a 40k
    epoch (40,000 images trained, 10,000 evaluated), how many times faster than the plain one, the
    last row, that is, and the hours the whole study would take at that pace."""
    epoch = {label: 40000 / train_rate + 10000 / eval_rate for label, train_rate, eval_rate in rows}
    plain = epoch[rows[-1][0]]
    return [(label, train_rate, eval_rate, epoch[label], plain / epoch[label], STUDY_EPOCHS * epoch[label] / 3600)
            for label, train_rate, eval_rate in rows]


def pays_after(compared, compiling):
    """torch.compile is worth it only in runs long enough to win back the seconds it spent compiling:
    the seconds it saves per 40k epoch (ours compiled, the second row, against ours), and the epochs
    after which it has paid for itself (None if it saves nothing here)."""
    saved = compared[0][3] - compared[1][3]
    return saved, compiling / saved if saved > 0 else None


def lengths(device, steps, windows, eval_images):
    """How long to time, where the flags leave it: 5 windows, each of 50 training steps on a GPU and
    of 4 on the CPU, a hundred times slower; and 10,000 images evaluated on a GPU, 1,000 on the CPU."""
    cuda = device.type == 'cuda'
    return steps or (50 if cuda else 4), windows or 5, eval_images or (10000 if cuda else 1000)


def main(argv=None):
    parser = flags.bench_parser(__doc__)
    args = parser.parse_args(argv)
    try:
        device, precision = hardware.pick(args.device, args.precision)
    except (ValueError, hardware.NotNative) as e:  # a device this machine lacks, bf16 on a T4: one line, exit status 2
        parser.error(str(e))
    steps, windows, eval_images = lengths(device, args.steps, args.windows, args.eval_images)
    print(f'{hardware.in_words(device)}; torch {torch.__version__}; batch {args.batch_size}; {steps} steps x {windows} windows; '
          f'{eval_images} images evaluated', flush=True)
    rows, compiling = pipelines(device, precision, args.batch_size, steps, windows, eval_images, args.compile)
    compared = compare(rows)
    print(tables.bench(compared, STUDY_EPOCHS, compiling and (compiling, *pays_after(compared, compiling))))


if __name__ == '__main__':
    main()
