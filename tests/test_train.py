"""train.py promises the training loop a textbook writes: every training image once an epoch, in
the seeded order, augmented as the flags say; plain SGD with the flags' learning rate, momentum
and weight decay; evaluation with BatchNorm's running statistics, changing nothing; and losses
and accuracies that an independent computation gives too. Each is checked against a few lines of
plain PyTorch written out here, so that every knob of the study provably reaches the computation
it names. The promises about a device hold on the CPU and, where there is one, on a CUDA GPU.

The quick tests use TinyNet, a network of the same kinds of layer that trains in milliseconds;
the slow ones (make test) train ResNet-18 in a process of its own."""
import contextlib
import copy
import functools
import math
import os
import pty
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import data
from bookkeeping import hardware
import train
from augment import crop_flip, erase, sample_boxes, sample_crops
from conftest import (A_RUN, CUDA, DEVICES, PALETTE, ROOT, TinyNet, make_cifar, metrics, one_line_error, train_py,
                      without_seconds)

CPU = torch.device('cpu')
NO_AUTOCAST = contextlib.nullcontext()  # fp32: train_one_epoch and evaluate enter it as they would autocast


def tiny_batches(n=100, seed=0):
    """n uint8 images and their labels, each class tinted as in the fake data set (learnable)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    noise = torch.randint(0, 128, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    return noise + PALETTE[labels][:, :, None, None], labels


MEAN, STD = torch.tensor([0.4, 0.45, 0.5]), torch.tensor([0.2, 0.25, 0.3])


def normalized(images):
    """By hand: each channel's pixels on the 0-1 scale, minus its mean, over its std."""
    return (images.float() / 255 - MEAN[:, None, None]) / STD[:, None, None]


# ---------------------------------------------------------------------------------------------
# The batches: order, size, and each augmentation knob.


def test_an_epoch_holds_every_image_once_in_the_seeded_order_and_batch_size():
    images, labels = tiny_batches()
    images[:, 0, 0, 0] = torch.arange(100, dtype=torch.uint8)  # each image marked with its index
    batches = list(train.training_batches(images, labels, MEAN, STD, 40, torch.Generator().manual_seed(3),
                                          torch.Generator().manual_seed(4), crop_and_flip=False))
    assert [len(y) for _, y in batches] == [40, 40, 20]
    order = torch.randperm(100, generator=torch.Generator().manual_seed(3))  # the run's seed draws the order
    seen = torch.cat([x[:, 0, 0, 0] for x, _ in batches]) * STD[0] + MEAN[0]
    torch.testing.assert_close(seen * 255, order.float(), atol=1e-3, rtol=0)
    assert torch.equal(torch.cat([y for _, y in batches]), labels[order])


# (crop and flip, erase p, scale, ratio): each knob away from its default in one setting at least
AUGMENTATIONS = [(False, 0.0, (0.02, 0.33), (0.3, 3.3)), (True, 0.0, (0.02, 0.33), (0.3, 3.3)),
                 (False, 1.0, (0.02, 0.33), (0.3, 3.3)), (True, 0.5, (0.1, 0.4), (0.5, 2.0)),
                 (False, 1.0, (0.33, 0.67), (1.0, 3.3))]


@pytest.mark.parametrize('crop_and_flip, p, scale, ratio', [  # crop and flip is an exercise of the handout
    pytest.param(*a, marks=pytest.mark.exercise('crop_flip') if a[0] else ()) for a in AUGMENTATIONS])
def test_batches_are_augmented_as_the_flags_say(crop_and_flip, p, scale, ratio):
    """The batches equal the augmentations written out by hand, with augment.py's samplers drawing
    from a generator seeded alike (tests/test_augment.py checks those against torchvision): crop
    and flip on the uint8 images, then normalising, then erasing."""
    images, labels = tiny_batches()
    batches = train.training_batches(images, labels, MEAN, STD, 40, torch.Generator().manual_seed(0),
                                     torch.Generator().manual_seed(1), crop_and_flip=crop_and_flip,
                                     erase_p=p, erase_scale=scale, erase_ratio=ratio)
    order, g = torch.randperm(100, generator=torch.Generator().manual_seed(0)), torch.Generator().manual_seed(1)
    for (x, y), idx in zip(batches, order.split(40), strict=True):
        expected = images[idx]
        if crop_and_flip:
            expected = crop_flip(expected, *sample_crops(len(idx), 4, g))
        expected = normalized(expected)
        if p > 0:
            expected = erase(expected, *sample_boxes(len(idx), 32, 32, p, scale, ratio, g))
        torch.testing.assert_close(x, expected)
        assert torch.equal(y, labels[idx])


@pytest.mark.parametrize('knob, changed', [('crop_and_flip', False), ('erase_p', 0.5), ('erase_scale', (0.33, 0.67)),
                                           ('erase_ratio', (1.0, 3.3))])
@pytest.mark.exercise('crop_flip')
def test_each_augmentation_knob_changes_the_batches(knob, changed):
    """A knob that silently did nothing would leave the batches as they were."""
    images, labels = tiny_batches()
    def first_batch(**kwargs):
        settings = dict(crop_and_flip=True, erase_p=1.0, erase_scale=(0.02, 0.33), erase_ratio=(0.3, 3.3)) | kwargs
        return next(train.training_batches(images, labels, MEAN, STD, 100, torch.Generator().manual_seed(0),
                                           torch.Generator().manual_seed(1), **settings))[0]
    assert not torch.equal(first_batch(), first_batch(**{knob: changed})), f'{knob} changed nothing'


# ---------------------------------------------------------------------------------------------
# One epoch of SGD, and evaluation.


def plain_sgd_epoch(model, optimizer, batches):
    """What train_one_epoch must do, written out with torch's plain SGD: returns the mean loss and
    accuracy over the epoch's images, each batch's loss counted once per image."""
    model.train()
    loss_sum, right, n = 0.0, 0, 0
    for x, y in batches:
        optimizer.zero_grad()
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        optimizer.step()
        loss_sum += F.cross_entropy(logits, y, reduction='sum').item()
        right += (logits.argmax(1) == y).sum().item()
        n += len(y)
    return loss_sum / n, right / n


@pytest.mark.exercise('train_one_epoch')
@pytest.mark.parametrize('lr, momentum, wd', [(0.05, 0.9, 5e-4), (0.2, 0.0, 0.0), (0.01, 0.5, 1e-2)])
def test_an_epoch_is_plain_sgd_with_the_flags_values(monkeypatch, lr, momentum, wd):
    """train.build's fused SGD and train_one_epoch, against torch's plain SGD in a loop written out:
    the same weights after an epoch, and the same mean loss and accuracy, in batches of 40, 40 and
    20 (so the loss must be weighted by each batch's size)."""
    monkeypatch.setattr(train, 'ResNet18', TinyNet)
    model, _, optimizer, scaler = train.build(0, lr, momentum, wd, 'fp32', CPU)
    reference = copy.deepcopy(model)
    images, labels = tiny_batches()
    batches = [(normalized(images[i:i + 40]).contiguous(memory_format=torch.channels_last), labels[i:i + 40])
               for i in range(0, 100, 40)]
    loss, acc = train.train_one_epoch(model, optimizer, scaler, batches, NO_AUTOCAST)
    plain = torch.optim.SGD(reference.parameters(), lr=lr, momentum=momentum, weight_decay=wd)
    expected_loss, expected_acc = plain_sgd_epoch(reference, plain, batches)
    assert loss == pytest.approx(expected_loss, rel=1e-5) and acc == expected_acc
    for name, ours in model.state_dict().items():
        torch.testing.assert_close(ours, reference.state_dict()[name], rtol=1e-5, atol=1e-6, msg=name)


def test_build_seeds_the_weights_with_the_run_s_seed():
    weights = lambda seed: train.build(seed, 0.1, 0.9, 0.0, 'fp32', CPU)[0].state_dict()
    torch.manual_seed(5)
    expected = train.ResNet18().state_dict()
    assert all(torch.equal(w, expected[k]) for k, w in weights(5).items())
    assert not torch.equal(weights(6)['fc.weight'], expected['fc.weight'])


def trained_tiny_net():
    """A TinyNet after a few steps, so that its BatchNorm's running statistics are its own."""
    torch.manual_seed(0)
    model = TinyNet()
    images, labels = tiny_batches()
    plain_sgd_epoch(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), [(normalized(images), labels)] * 3)
    return model


@pytest.mark.exercise('evaluate')
def test_evaluation_uses_the_running_statistics_and_changes_nothing():
    """model.eval() is a lesson of its own: BatchNorm must normalise with the statistics it gathered
    in training, not the batch's, and evaluating must not update them."""
    model = trained_tiny_net()
    before = copy.deepcopy(model.state_dict())
    images, labels = tiny_batches(seed=1)
    loss, acc, predictions = train.evaluate(model, images, labels, MEAN, STD, NO_AUTOCAST)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), 'evaluation changed the model'
    reference = copy.deepcopy(model).eval()
    with torch.no_grad():
        logits = reference(normalized(images))
    assert loss == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-5)
    assert torch.equal(predictions.long(), logits.argmax(1))
    assert acc == pytest.approx((logits.argmax(1) == labels).float().mean().item()) and len(set(predictions.tolist())) > 1
    with torch.no_grad():  # and that is not what the batch's own statistics would give: the test can tell
        in_train_mode = F.cross_entropy(copy.deepcopy(model).train()(normalized(images)), labels).item()
    assert abs(in_train_mode - loss) > 1e-3


@pytest.mark.exercise('crop_flip', 'train_one_epoch', 'evaluate')
@pytest.mark.parametrize('device', DEVICES)
def test_an_epoch_draws_nothing_from_torch_s_global_generators(monkeypatch, device):
    """Data order and augmentation have generators of their own, and nothing else is random: so the
    checkpoint keeps those two, and a resumed run does not depend on the global ones."""
    monkeypatch.setattr(train, 'ResNet18', TinyNet)
    dev = torch.device(device)
    model, _, optimizer, scaler = train.build(0, 0.05, 0.9, 5e-4, 'fp32', dev)
    images, labels = (t.to(dev) for t in tiny_batches())
    global_states = lambda: [torch.get_rng_state()] + ([torch.cuda.get_rng_state(dev)] if device == 'cuda' else [])
    before = global_states()
    batches = train.training_batches(images, labels, MEAN.to(dev), STD.to(dev), 40, torch.Generator().manual_seed(0),
                                     torch.Generator(device=dev).manual_seed(1), erase_p=1.0)
    train.train_one_epoch(model, optimizer, scaler, batches, NO_AUTOCAST)
    train.evaluate(model, images, labels, MEAN.to(dev), STD.to(dev), NO_AUTOCAST)
    assert all(torch.equal(a, b) for a, b in zip(global_states(), before, strict=True))


# ---------------------------------------------------------------------------------------------
# A whole run, flag by flag, against the loop written out in plain PyTorch.

# Two runs with every knob of the study away from its default in one or the other.
SETTINGS = [dict(epochs=3, cosine=True, lr=0.05, momentum=0.8, wd=1e-3, batch=40, crop_flip=True, p=0.7, scale=(0.1, 0.4),
                 ratio=(0.5, 2.0), train_subset=100, eval_subset=30, seed=3),
            dict(epochs=2, cosine=False, lr=0.1, momentum=0.0, wd=0.0, batch=64, crop_flip=False, p=0.0, scale=(0.02, 0.33),
                 ratio=(0.3, 3.3), train_subset=120, eval_subset=20, seed=1)]


def flags(s):
    """train.py's flags for a setting of SETTINGS."""
    return ['--epochs', str(s['epochs']), '--lr', str(s['lr']), '--momentum', str(s['momentum']),
            '--wd', str(s['wd']), '--batch-size', str(s['batch']), '--erase-p', str(s['p']),
            '--erase-scale', *map(str, s['scale']), '--erase-ratio', *map(str, s['ratio']),
            '--train-subset', str(s['train_subset']), '--eval-subset', str(s['eval_subset']), '--seed', str(s['seed']),
            '--precision', 'fp32', '--device', 'cpu'] + ['--cosine'] * s['cosine'] + ['--no-crop-flip'] * (not s['crop_flip'])


def plain_pytorch_run(root, s):
    """A setting's run written out: the split and subsets from data.py (tests/test_data.py checks
    them), the normalisation by hand from the training split, the cosine by hand, torch's plain SGD,
    augment.py's samplers (tests/test_augment.py checks them against torchvision).
    Returns each epoch's (lr, train loss, train acc, val loss, val acc)."""
    train_x, train_y, _, _ = data.load_cifar10(root, download=False)
    train_idx, val_idx = data.split_for(train_y, s['seed'])
    pixels = train_x[train_idx].numpy().astype(np.float64) / 255
    mean, std = (torch.tensor(f(pixels, axis=(0, 2, 3)), dtype=torch.float32) for f in (np.mean, functools.partial(np.std, ddof=1)))
    train_idx = data.balanced_subset(train_idx, train_y, s['train_subset'])
    val_idx = data.balanced_subset(val_idx, train_y, s['eval_subset'])
    norm = lambda x: (x.float() / 255 - mean[:, None, None]) / std[:, None, None]
    torch.manual_seed(s['seed'])
    model = TinyNet().to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=s['lr'], momentum=s['momentum'], weight_decay=s['wd'])
    order_gen, augment_gen = torch.Generator().manual_seed(s['seed']), torch.Generator().manual_seed(s['seed'] + 1)
    rows = []
    for epoch in range(s['epochs']):
        rate = s['lr'] * (1 + math.cos(math.pi * epoch / s['epochs'])) / 2 if s['cosine'] else s['lr']
        for group in optimizer.param_groups:
            group['lr'] = rate
        batches = []
        for idx in train_idx[torch.randperm(len(train_idx), generator=order_gen)].split(s['batch']):
            x = train_x[idx]
            if s['crop_flip']:
                x = crop_flip(x, *sample_crops(len(idx), 4, augment_gen))
            x = norm(x)
            if s['p']:
                x = erase(x, *sample_boxes(len(idx), 32, 32, s['p'], s['scale'], s['ratio'], augment_gen))
            batches.append((x, train_y[idx]))
        train_loss, train_acc = plain_sgd_epoch(model, optimizer, batches)
        model.eval()
        with torch.no_grad():
            logits = model(norm(train_x[val_idx]))
        val_y = train_y[val_idx]
        rows.append((rate, train_loss, train_acc, F.cross_entropy(logits, val_y).item(),
                     (logits.argmax(1) == val_y).float().mean().item()))
    return rows


def exercises_of(s):
    """The handout's exercises a setting's run needs: a run's, but crop and flip only where it has them,
    and the cosine where it has that."""
    return pytest.mark.exercise(*[e for e in A_RUN if e != 'crop_flip' or s['crop_flip']], *['cosine_lr'] * s['cosine'])


@pytest.mark.parametrize('setting', [pytest.param(s, marks=exercises_of(s)) for s in SETTINGS])
def test_a_run_is_its_loop_written_out_in_plain_pytorch(monkeypatch, cifar_root, tmp_path, setting):
    """Every flag of the study away from its default in one of two runs: the learning rate epoch by
    epoch, cosine or constant, momentum, weight decay, each erasing parameter, crop and flip, the
    batch size, the subsets, the seed. metrics.jsonl must hold what the plain loop computes."""
    monkeypatch.setattr(train, 'ResNet18', TinyNet)
    train.main([*flags(setting), '--data-dir', cifar_root, '--out', str(tmp_path / 'run')])
    expected = plain_pytorch_run(cifar_root, setting)
    for row, (lr, train_loss, train_acc, val_loss, val_acc) in zip(metrics(tmp_path / 'run'), expected, strict=True):
        assert row['lr'] == pytest.approx(lr, rel=1e-12), row['epoch']
        assert (row['train_loss'], row['val_loss']) == (pytest.approx(train_loss, rel=1e-4), pytest.approx(val_loss, rel=1e-4))
        assert (row['train_acc'], row['val_acc']) == (pytest.approx(train_acc), pytest.approx(val_acc)), row['epoch']


# ---------------------------------------------------------------------------------------------
# Precision, and the GPU.


def skip_without_bf16_tensor_cores(device, precision):
    """bf16 on a GPU that hardware.pick_precision would refuse it on (a T4, a V100): nothing to test."""
    if device == 'cuda' and precision == 'bf16' and torch.cuda.get_device_capability() < (8, 0):
        pytest.skip('this GPU has no bf16 tensor cores')


@pytest.mark.exercise('train_one_epoch')
@pytest.mark.parametrize('device', DEVICES)
def test_fp16_steps_skip_overflows_as_gradscaler_s_reference_path_does(monkeypatch, device):
    """train.build's fused SGD takes the scaler's overflow flag as a tensor and skips on the device.
    torch's reference path, the default SGD with GradScaler reading the flag on the host, written
    out here, must reach the same weights through batches whose fp16 activations overflow: the
    first, and a later one."""
    monkeypatch.setattr(train, 'ResNet18', TinyNet)
    dev = torch.device(device)
    model, _, optimizer, scaler = train.build(0, 0.05, 0.9, 5e-4, 'fp16', dev)
    reference = copy.deepcopy(model)
    plain_sgd = torch.optim.SGD(reference.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    plain_scaler = torch.amp.GradScaler(device)
    g = torch.Generator().manual_seed(0)
    batches = [((torch.randn(16, 3, 32, 32, generator=g) * (1e6 if step in (0, 3) else 1)).to(dev),
                torch.randint(0, 10, (16,), generator=g).to(dev)) for step in range(6)]  # 1e6: past fp16's 65504
    train.train_one_epoch(model, optimizer, scaler, batches, hardware.autocast_for(dev, 'fp16'))
    for x, y in batches:
        plain_sgd.zero_grad()
        with torch.autocast(device, dtype=torch.float16):
            loss = F.cross_entropy(reference(x), y)
        plain_scaler.scale(loss).backward()
        plain_scaler.step(plain_sgd)
        plain_scaler.update()
    assert scaler.get_scale() == plain_scaler.get_scale() == 2.0 ** 14  # halved once per overflow
    for ours, theirs in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.exercise('balanced_split', 'channel_stats', 'crop_flip', 'train_one_epoch')
@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('precision', ['bf16', 'fp16'])
def test_half_precision_learns_what_fp32_learns(monkeypatch, cifar_root, device, precision):
    """Three epochs from the same weights: fp32 written out with torch's plain SGD, and train.py's
    loop in half precision, with the small network (whose steady learning makes the comparison
    sharp). The first epoch's loss agrees to 2%, and after three both have learned as much, to 10%."""
    skip_without_bf16_tensor_cores(device, precision)
    monkeypatch.setattr(train, 'ResNet18', TinyNet)
    dev = torch.device(device)
    split, _, _, mean, std = data.load_splits(cifar_root, 0, dev)
    model, _, optimizer, scaler = train.build(0, 0.02, 0.9, 5e-4, precision, dev)
    reference = copy.deepcopy(model)
    plain = torch.optim.SGD(reference.parameters(), lr=0.02, momentum=0.9, weight_decay=5e-4)
    batch_gens = lambda: (torch.Generator().manual_seed(0), torch.Generator(device=dev).manual_seed(1))
    ours_gens, theirs_gens = batch_gens(), batch_gens()
    ours, theirs = [], []
    for _ in range(3):
        batches = list(train.training_batches(split.x, split.y, mean, std, 25, *theirs_gens))
        theirs.append(plain_sgd_epoch(reference, plain, batches))
        batches = train.training_batches(split.x, split.y, mean, std, 25, *ours_gens)
        ours.append(train.train_one_epoch(model, optimizer, scaler, batches,
                                          hardware.autocast_for(dev, precision)))
    assert ours[0][0] == pytest.approx(theirs[0][0], rel=0.02)
    assert ours[-1][0] == pytest.approx(theirs[-1][0], rel=0.1) and ours[-1][1] == pytest.approx(theirs[-1][1], abs=0.05)
    assert ours[-1][1] > 0.5  # and both did learn: chance is 0.1


@pytest.mark.exercise('crop_flip', 'train_one_epoch')
@CUDA
@pytest.mark.parametrize('precision', ['fp32', 'bf16', 'fp16'])
def test_an_epoch_waits_for_the_gpu_only_to_read_its_sums(precision):
    """No host sync per step, fp16's scaler included: an epoch of 4 batches makes the CPU wait for
    the GPU as often as an epoch of 1 (torch's sync debug mode warns at each wait)."""
    skip_without_bf16_tensor_cores('cuda', precision)
    device = torch.device('cuda')
    model, _, optimizer, scaler = train.build(0, 0.05, 0.9, 5e-4, precision, device)
    mean, std = torch.full((3,), 0.5, device=device), torch.full((3,), 0.25, device=device)
    order_gen, augment_gen = torch.Generator().manual_seed(0), torch.Generator(device=device).manual_seed(1)
    autocast = hardware.autocast_for(device, precision)

    def waits(batches):
        images = torch.randint(0, 256, (32 * batches, 3, 32, 32), dtype=torch.uint8, device=device)
        labels = torch.randint(0, 10, (32 * batches,), device=device)
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            torch.cuda.set_sync_debug_mode('warn')
            try:
                epoch = train.training_batches(images, labels, mean, std, 32, order_gen, augment_gen, erase_p=1.0)
                train.train_one_epoch(model, optimizer, scaler, epoch, autocast)
            finally:
                torch.cuda.set_sync_debug_mode('default')
        return sum('synchroniz' in str(w.message) for w in caught)
    waits(1)  # the first epoch: cuDNN and the scaler's lazy set-up
    assert waits(4) == waits(1) > 0


@pytest.mark.exercise(*A_RUN)
@pytest.mark.parametrize('deterministic', [False, True])
def test_deterministic_chooses_repeatable_kernels_and_otherwise_lets_cudnn_time_them(
        monkeypatch, cifar_root, tmp_path, deterministic):
    """What --deterministic changes is global to the process, so it is checked here, in the run's
    own process; on a GPU the repeatability it buys is checked by the slow tests below."""
    monkeypatch.setattr(train, 'ResNet18', TinyNet)
    monkeypatch.setattr(torch.backends.cudnn, 'benchmark', False)
    monkeypatch.delenv('CUBLAS_WORKSPACE_CONFIG', raising=False)
    try:
        train.main(['--epochs', '1', '--train-subset', '20', '--eval-subset', '10', '--device', 'cpu',
                    '--data-dir', cifar_root, '--out', str(tmp_path / 'run')] + ['--deterministic'] * deterministic)
        assert torch.are_deterministic_algorithms_enabled() == deterministic
        assert torch.backends.cudnn.benchmark == (not deterministic)
        assert (os.environ.get('CUBLAS_WORKSPACE_CONFIG') == ':4096:8') == deterministic
    finally:
        torch.use_deterministic_algorithms(False)


# ---------------------------------------------------------------------------------------------
# The flags: a value that cannot be is one line and exit status 2, and nothing written.


@pytest.mark.parametrize('flags, says', [
    (['--lr', '0'], '--lr'), (['--lr', '-0.1'], '--lr'), (['--lr', 'nan'], '--lr'), (['--lr', 'fast'], '--lr'),
    (['--epochs', '0'], '--epochs'), (['--epochs', '1.5'], '--epochs'), (['--batch-size', '-1'], '--batch-size'),
    (['--wd', '-1e-4'], '--wd'), (['--momentum', '-0.9'], '--momentum'),
    (['--erase-p', '1.5'], '--erase-p'), (['--erase-p', '-0.5'], '--erase-p'),
    (['--erase-scale', '0.5', '0.1'], '--erase-scale'), (['--erase-scale', '0', '0.3'], '--erase-scale'),
    (['--erase-scale', '0.5', '1.5'], '--erase-scale'), (['--erase-scale', '0.5'], '--erase-scale'),
    (['--erase-ratio', '3.3', '0.3'], '--erase-ratio'), (['--erase-ratio', '-1', '2'], '--erase-ratio'),
    (['--train-subset', '0'], '--train-subset'), (['--eval-subset', '-5'], '--eval-subset'),
    (['--precision', 'fp8'], '--precision'), (['--device', 'tpu'], '--device'), (['--device', 'mps'], '--device'),
    (['--device', 'cuda:x'], '--device'), (['--lrate', '0.1'], '--lrate'),
    (['--seed', '-1'], '--seed'),
])
def test_each_bad_flag_is_one_line_and_status_2(capsys, cifar_root, tmp_path, flags, says):
    out = tmp_path / 'never'
    assert says in one_line_error(capsys, flags + ['--data-dir', cifar_root, '--out', str(out), '--device', 'cpu']
                                  if '--device' not in flags else flags + ['--out', str(out)])
    assert not out.exists()


@pytest.mark.slow
def test_bad_flag_from_the_shell_prints_no_traceback(cifar_root):
    result = train_py('--erase-p', '2', '--data-dir', cifar_root)
    assert result.returncode == 2 and result.stderr.splitlines() == [
        'train.py: error: --erase-p must be within [0, 1], got 2.0 (see --help)']


# ---------------------------------------------------------------------------------------------
# ResNet-18 itself, in a process of its own (slow).

# 100 of the fake data set's 200 training images, in batches of 40, 40 and a smaller last one of 20.
FLAGS = ['--epochs', '3', '--cosine', '--lr', '0.02', '--wd', '5e-4', '--erase-p', '0.5', '--train-subset', '100',
         '--batch-size', '40']


def on(device):
    """The flags of a run on `device`. On CUDA with --deterministic: otherwise cuDNN may pick
    convolution algorithms that sum in another order from one run to the next."""
    return ['--device', device] + (['--deterministic'] if device == 'cuda' else [])


@pytest.fixture(scope='module')
def reference_run(cifar_root, tmp_path_factory):
    """reference_run(device): the folder of a finished ResNet-18 run of FLAGS on that device, made once."""
    made = {}

    def on_device(device):
        if device not in made:
            out = str(tmp_path_factory.mktemp('runs') / f'ref-{device}')
            result = train_py(*FLAGS, *on(device), '--data-dir', cifar_root, '--out', out)
            assert result.returncode == 0, result.stderr
            made[device] = out
        return made[device]
    return on_device


@pytest.mark.exercise(*A_RUN, 'BasicBlock.forward', 'cosine_lr')
@pytest.mark.slow
@pytest.mark.parametrize('device', DEVICES)
def test_resnet18_learns(reference_run, device):
    """The fake data set's classes are tinted: ResNet-18 must learn them, in the precision auto picks."""
    rows = metrics(reference_run(device))
    assert rows[-1]['train_loss'] < rows[0]['train_loss'] / 2 and rows[-1]['train_acc'] > 0.5
    assert rows[-1]['val_loss'] < rows[0]['val_loss']


@pytest.mark.exercise(*A_RUN, 'BasicBlock.forward', 'cosine_lr')
@pytest.mark.slow
@pytest.mark.parametrize('device', DEVICES)
def test_the_same_flags_give_the_same_run(reference_run, cifar_root, tmp_path, device):
    result = train_py(*FLAGS, *on(device), '--data-dir', cifar_root, '--out', str(tmp_path / 'again'))
    assert result.returncode == 0, result.stderr
    assert without_seconds(metrics(tmp_path / 'again')) == without_seconds(metrics(reference_run(device)))


@pytest.mark.exercise(*A_RUN, 'BasicBlock.forward', 'cosine_lr')
@pytest.mark.slow
def test_another_seed_gives_another_run(reference_run, cifar_root, tmp_path):
    """Its first epoch already differs: another split, other initial weights, another order."""
    result = train_py(*FLAGS, '--epochs', '1', '--seed', '1', '--device', 'cpu', '--data-dir', cifar_root,
                      '--out', str(tmp_path / 'seed1'))
    assert result.returncode == 0, result.stderr
    first = without_seconds(metrics(reference_run('cpu')))[0] | {'lr': None}
    assert without_seconds(metrics(tmp_path / 'seed1'))[0] | {'lr': None} != first


@pytest.mark.exercise(*A_RUN)
@pytest.mark.slow
def test_compile_learns_what_the_eager_model_learns(tmp_path):
    """--compile fuses kernels, so its sums round in another order: the same run, to rounding.
    With the small network, whose kernels compile in seconds (ResNet-18 takes half a minute on 2
    cores; make bench compiles it on a GPU, tests/test_bench.py).
    fp32, so that rounding is ~1e-7 and not bf16's ~1e-3; one batch shape, so it compiles fast.
    Epoch 2's losses are those of the weights after a step, so they compare the updates too.
    Untinted images: on the tinted ones the first step falls so steeply (loss 2.4 to 1.8) that it
    magnifies the rounding 100 times, and the comparison would say less."""
    make_cifar(str(tmp_path), tint=False)
    args = ['--epochs', '2', '--train-subset', '50', '--eval-subset', '50', '--batch-size', '50', '--lr', '0.05',
            '--erase-p', '0.5', '--precision', 'fp32', '--device', 'cpu', '--data-dir', str(tmp_path)]
    eager = train_py(*args, '--out', str(tmp_path / 'eager'), tiny=True)
    compiled = train_py(*args, '--compile', '--out', str(tmp_path / 'compiled'), tiny=True)
    assert eager.returncode == 0 and compiled.returncode == 0, compiled.stderr
    for ours, reference in zip(metrics(tmp_path / 'compiled'), metrics(tmp_path / 'eager'), strict=True):
        for key in ('train_loss', 'val_loss'):
            assert ours[key] == pytest.approx(reference[key], rel=1e-4)


def run_in_a_terminal(args):
    """Run train.py with its stdout on a pseudo-terminal, as in a shell; return all it printed."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, 'train.py'), *args], stdout=follower,
                            stderr=subprocess.PIPE, text=True)
    os.close(follower)
    printed = b''
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the process has closed its end
            break
        if not chunk:
            break
        printed += chunk
    assert proc.wait(timeout=600) == 0, proc.stderr.read()
    os.close(leader)
    return printed.decode()


@pytest.mark.exercise(*A_RUN, 'BasicBlock.forward')
@pytest.mark.slow
def test_progress_is_one_line_rewritten_in_a_terminal_and_absent_from_logs(cifar_root, tmp_path):
    args = ['--epochs', '1', '--train-subset', '50', '--eval-subset', '10', '--batch-size', '10', '--device', 'cpu',
            '--data-dir', cifar_root]
    shown = run_in_a_terminal([*args, '--out', str(tmp_path / 'terminal')])
    progress = [part for part in shown.split('\r') if 'images/s' in part]
    assert progress and all(p.strip().startswith('batch ') and p.strip().endswith('left') for p in progress)
    assert '\n' not in ''.join(progress) and 'batch 1/5' in progress[0]
    assert 'epoch   1/1' in shown
    logged = train_py(*args, '--out', str(tmp_path / 'log'))
    assert logged.returncode == 0 and '\r' not in logged.stdout and 'images/s' not in logged.stdout
    assert len(logged.stdout.splitlines()) == 3  # what it is training on, the epoch, the test
