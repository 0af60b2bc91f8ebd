"""runs.py promises a run folder that holds everything a run did; a run killed at any moment and
resumed that is the run never interrupted, in every precision, compiled or not; and bad input
that is one line, an exit status, and no file touched."""
import copy
import json
import math
import os
import re
import signal
import socket
import subprocess
import time

import pytest
import torch
import torch.nn.functional as F

import data
from bookkeeping import download, locks
from bookkeeping import runs
import train
from bookkeeping import flags
from runner import status
from conftest import (A_RUN, DEVICES, MAKE, TinyNet, make_cifar, metrics, one_line_error, snapshot, train_py,
                      without_seconds, write_run)

QUICK = ['--epochs', '2', '--cosine', '--lr', '0.05', '--erase-p', '0.5', '--train-subset', '100', '--eval-subset', '30',
         '--batch-size', '40', '--precision', 'fp32', '--device', 'cpu']
METRIC_KEYS = {'epoch', 'lr', 'train_loss', 'train_acc', 'val_loss', 'val_acc', 'seconds'}


@pytest.fixture
def tiny(monkeypatch):
    """tiny(*argv): train.main in this process with TinyNet for ResNet-18, a run in a blink. A test
    that asks for it has TinyNet in train.main throughout, one_line_error's calls included."""
    monkeypatch.setattr(train, 'ResNet18', TinyNet)
    return lambda *argv: train.main(list(argv))


@pytest.fixture
def finished(tiny, cifar_root, tmp_path):
    """The folder of a finished tiny run of QUICK."""
    out = str(tmp_path / 'finished')
    tiny(*QUICK, '--data-dir', cifar_root, '--out', out)
    return out


@pytest.mark.exercise(*A_RUN, 'cosine_lr')
def test_a_run_writes_every_file_with_every_key(finished):
    config = json.load(open(os.path.join(finished, 'config.json')))
    assert {'flags', 'torch', 'device', 'device_name', 'compute_capability', 'cuda_visible_devices', 'host',
            'git_commit', 'sizes', 'mean', 'std'} <= set(config)
    assert config['flags']['lr'] == 0.05 and config['flags']['erase_p'] == 0.5 and config['torch'] == torch.__version__
    assert config['sizes'] == {'train': 100, 'val': 30, 'test': 30}
    rows = metrics(finished)
    assert [row['epoch'] for row in rows] == [1, 2] and all(set(row) == METRIC_KEYS for row in rows)
    summary = json.load(open(os.path.join(finished, 'summary.json')))
    assert {k: summary[k] for k in ('train_loss', 'train_acc', 'val_loss', 'val_acc')} == \
        {k: rows[-1][k] for k in ('train_loss', 'train_acc', 'val_loss', 'val_acc')}
    assert sorted(os.listdir(finished)) == ['checkpoint.pt', 'config.json', 'lock', 'metrics.jsonl', 'predictions.pt', 'summary.json']


@pytest.mark.exercise(*A_RUN, 'cosine_lr')
def test_the_test_set_is_scored_once_by_the_final_weights(finished, cifar_root):
    """summary.json's test numbers and predictions.pt are those of the last epoch's weights in
    evaluation mode, computed here by hand from the checkpoint; the validation predictions give the
    last epoch's validation accuracy."""
    config = json.load(open(os.path.join(finished, 'config.json')))
    model = TinyNet()
    model.load_state_dict(torch.load(os.path.join(finished, 'checkpoint.pt'), weights_only=True)['model'])
    _, _, test_x, test_y = data.load_cifar10(cifar_root, download=False)
    saved = torch.load(os.path.join(finished, 'predictions.pt'), weights_only=True)
    index = saved['test']['index']
    assert torch.equal(index, data.balanced_subset(torch.arange(len(test_y)), test_y, 30))
    mean, std = torch.tensor(config['mean']), torch.tensor(config['std'])
    with torch.no_grad():
        logits = model.eval()((test_x[index].float() / 255 - mean[:, None, None]) / std[:, None, None])
    summary = json.load(open(os.path.join(finished, 'summary.json')))
    assert summary['test_loss'] == pytest.approx(F.cross_entropy(logits, test_y[index]).item(), rel=1e-5)
    assert torch.equal(saved['test']['pred'].long(), logits.argmax(1)) and torch.equal(saved['test']['label'].long(), test_y[index])
    assert summary['test_acc'] == pytest.approx((logits.argmax(1) == test_y[index]).float().mean().item())
    right = (saved['val']['pred'] == saved['val']['label']).float().mean().item()
    assert right == pytest.approx(metrics(finished)[-1]['val_acc']) and saved['val']['pred'].dtype == torch.int8


def wait_for_checkpoint(proc, out):
    """Wait until the run has saved its first epoch; then it is somewhere in its second."""
    deadline = time.time() + 300
    while not os.path.exists(os.path.join(out, 'checkpoint.pt')):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.02)


def kill_and_resume(args, out, cifar_root, tiny=False):
    """Start a run, SIGKILL it during its second epoch (no chance to clean up), resume it with a
    plain --resume (its flags from config.json), and let it finish."""
    proc = train_py(*args, '--out', out, wait=False, tiny=tiny)
    wait_for_checkpoint(proc, out)
    proc.kill()
    proc.wait()
    assert not os.path.exists(os.path.join(out, 'summary.json')), 'the run ended before it could be killed'
    result = train_py('--resume', '--out', out, '--data-dir', cifar_root, tiny=tiny)
    assert result.returncode == 0, result.stderr


def checkpoint(out):
    return torch.load(os.path.join(out, 'checkpoint.pt'), weights_only=True, map_location='cpu')


def assert_same_run(ours, reference):
    """The same metrics but the seconds, the same final weights, SGD state and predictions."""
    assert without_seconds(metrics(ours)) == without_seconds(metrics(reference))
    a, b = checkpoint(ours), checkpoint(reference)
    assert all(torch.equal(a['model'][k], b['model'][k]) for k in b['model'])
    momentum = lambda state: [s['momentum_buffer'] for s in state['optimizer']['state'].values()]
    assert all(torch.equal(x, y) for x, y in zip(momentum(a), momentum(b), strict=True))
    assert a['scaler'] == b['scaler']
    saved = [torch.load(os.path.join(run, 'predictions.pt'), weights_only=True) for run in (ours, reference)]
    assert all(torch.equal(saved[0][s]['pred'], saved[1][s]['pred']) for s in ('val', 'test'))


@pytest.mark.exercise(*A_RUN)
def test_a_killed_and_resumed_run_is_the_run_never_interrupted(cifar_root, tmp_path):
    """fp16 with its loss scaler, and erasing, with the small network in processes of their own:
    a resume that forgot the momentum, the scaler's state (its count of steps since the last
    overflow decides when the scale next grows) or a generator would differ from the run never
    interrupted. Ten epochs, so that the run is killed well before its end."""
    args = ['--epochs', '10', '--lr', '0.05', '--batch-size', '25', '--erase-p', '0.5', '--precision', 'fp16',
            '--device', 'cpu', '--data-dir', cifar_root]
    whole = str(tmp_path / 'whole')
    assert train_py(*args, '--out', whole, tiny=True).returncode == 0
    out = str(tmp_path / 'killed')
    kill_and_resume(args, out, cifar_root, tiny=True)
    assert_same_run(out, whole)
    assert checkpoint(whole)['scaler']['_growth_tracker'] == 10 * 200 // 25


@pytest.mark.exercise(*A_RUN, 'BasicBlock.forward', 'cosine_lr')
@pytest.mark.slow
@pytest.mark.parametrize('device', DEVICES)
def test_a_killed_and_resumed_resnet18_run_is_the_run_never_interrupted(cifar_root, tmp_path, device):
    """ResNet-18 in the precision auto picks, on every device (on CUDA with --deterministic)."""
    args = ['--epochs', '3', '--cosine', '--lr', '0.02', '--wd', '5e-4', '--erase-p', '0.5', '--train-subset', '100',
            '--batch-size', '40', '--device', device, '--data-dir', cifar_root] + ['--deterministic'] * (device == 'cuda')
    assert train_py(*args, '--out', str(tmp_path / 'whole')).returncode == 0
    kill_and_resume(args, str(tmp_path / 'killed'), cifar_root)
    assert_same_run(tmp_path / 'killed', tmp_path / 'whole')


@pytest.mark.exercise(*A_RUN)
@pytest.mark.slow
def test_a_compiled_run_killed_and_resumed_is_the_run_never_interrupted(cifar_root, tmp_path):
    """A plain --resume keeps --compile, and each batch shape keeps its own kernels (75 images in
    batches of 50: a last batch of 25), so the resumed run rounds exactly as the original. With the
    small network, whose kernels compile in seconds (test_train.py compiles ResNet-18), and twenty
    epochs, so that it is killed well before its end."""
    args = ['--epochs', '20', '--train-subset', '75', '--eval-subset', '50', '--batch-size', '50', '--precision', 'fp32',
            '--compile', '--device', 'cpu', '--data-dir', cifar_root]
    assert train_py(*args, '--out', str(tmp_path / 'whole'), tiny=True).returncode == 0
    kill_and_resume(args, str(tmp_path / 'killed'), cifar_root, tiny=True)
    assert_same_run(tmp_path / 'killed', tmp_path / 'whole')


@pytest.mark.exercise(*A_RUN, 'BasicBlock.forward')
@pytest.mark.slow
def test_ctrl_c_keeps_the_last_epoch_and_says_how_to_resume(cifar_root, tmp_path):
    out = str(tmp_path / 'interrupted')
    proc = train_py('--epochs', '3', '--train-subset', '100', '--device', 'cpu', '--data-dir', cifar_root, '--out', out,
                    wait=False)
    wait_for_checkpoint(proc, out)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130 and 'Traceback' not in stderr
    assert f'python train.py --resume --out {out}' in stderr
    assert checkpoint(out)['epoch'] >= 1


# ---------------------------------------------------------------------------------------------
# What --resume and --force may do, and bad input.


def unfinished(folder):
    """Make a finished run look interrupted after its last epoch: no summary yet."""
    os.remove(os.path.join(folder, 'summary.json'))
    return folder


@pytest.mark.exercise(*A_RUN, 'cosine_lr')
@pytest.mark.parametrize('interrupted', [False, True])
def test_an_occupied_folder_is_refused_and_left_as_it_was(capsys, tiny, finished, cifar_root, interrupted):
    """A run started in a folder that holds one, finished or interrupted (its checkpoint would go):
    refused, the folder as it was, with --resume and --force named."""
    if interrupted:
        unfinished(finished)
    before = snapshot(finished)
    err = one_line_error(capsys, [*QUICK, '--data-dir', cifar_root, '--out', finished], 1)
    assert 'already holds a run' in err and '--resume' in err and snapshot(finished) == before


def test_resume_keeps_the_run_s_compile_and_deterministic_unless_given_again(tmp_path):
    """--compile and --deterministic change how a run computes, not what it learns: --resume keeps
    the run's own (a compiled run resumes compiled), and takes them from the command when given."""
    def resumed(saved, *given):
        out = tmp_path / str(len(list(tmp_path.iterdir())))
        out.mkdir()
        runs.write_json(str(out / 'config.json'), {'flags': flags.DEFAULTS | saved, 'sizes': {'train': 8, 'val': 2, 'test': 2}})
        argv = ['--resume', '--out', str(out), *given]
        args = flags.parser().parse_args(argv)
        runs.take_saved_flags(args, flags.given(argv))
        return args.compile, args.deterministic
    assert resumed({'compile': True, 'deterministic': True}) == (True, True)
    assert resumed({'compile': False, 'deterministic': False}, '--compile') == (True, False)


@pytest.mark.exercise(*A_RUN, 'cosine_lr')
def test_force_starts_over(tiny, finished, cifar_root):
    tiny(*QUICK, '--lr', '0.1', '--epochs', '1', '--data-dir', cifar_root, '--out', finished, '--force')
    assert json.load(open(os.path.join(finished, 'config.json')))['flags']['lr'] == 0.1 and len(metrics(finished)) == 1


@pytest.mark.exercise(*A_RUN, 'cosine_lr')
def test_resume_takes_the_run_s_own_flags(tiny, finished, cifar_root, capsys):
    unfinished(finished)
    tiny('--resume', '--out', finished, '--data-dir', cifar_root)  # nothing left but the test set: it finishes
    assert 'all epochs done: the test set' in capsys.readouterr().out and os.path.exists(os.path.join(finished, 'summary.json'))
    tiny('--resume', '--out', finished)
    assert 'has finished (summary.json): nothing to resume' in capsys.readouterr().out


@pytest.mark.exercise(*A_RUN, 'cosine_lr')
def test_a_run_from_before_a_knob_existed_still_resumes(tiny, finished, cifar_root, capsys):
    """As if --momentum had been added to train.py after the run started: neither its config.json
    nor its checkpoint has the key. The run had the default then, has it now, and resumes."""
    config = json.load(open(os.path.join(unfinished(finished), 'config.json')))
    del config['flags']['momentum']
    runs.write_json(os.path.join(finished, 'config.json'), config)
    state = checkpoint(finished)
    del state['config']['momentum']
    torch.save(state, os.path.join(finished, 'checkpoint.pt'))
    tiny('--resume', '--out', finished, '--data-dir', cifar_root)
    assert 'all epochs done: the test set' in capsys.readouterr().out and runs.state(finished) == 'finished'


@pytest.mark.exercise(*A_RUN, 'cosine_lr')
def test_resume_refuses_flags_that_contradict_the_run(capsys, tiny, finished, cifar_root):
    before = snapshot(unfinished(finished))
    err = one_line_error(capsys, ['--resume', '--out', finished, '--lr', '0.1', '--data-dir', cifar_root], 2)
    assert '--lr 0.1 differs from its 0.05' in err
    err = one_line_error(capsys, ['--resume', '--out', os.path.join(finished, 'none')], 2)
    assert 'nothing to resume' in err and snapshot(finished) == before


@pytest.mark.exercise(*A_RUN, 'cosine_lr')
def test_a_checkpoint_of_another_configuration_is_refused(capsys, tiny, finished, cifar_root, tmp_path):
    other = str(tmp_path / 'other')
    tiny(*QUICK, '--seed', '1', '--data-dir', cifar_root, '--out', other)
    os.replace(os.path.join(finished, 'checkpoint.pt'), os.path.join(unfinished(other), 'checkpoint.pt'))
    before = snapshot(other)
    err = one_line_error(capsys, ['--resume', '--out', other, '--data-dir', cifar_root], 1)
    assert 'another configuration (differs in: seed)' in err and snapshot(other) == before


@pytest.mark.exercise(*A_RUN, 'cosine_lr')
def test_an_unreadable_checkpoint_is_refused(capsys, tiny, finished, cifar_root):
    with open(os.path.join(unfinished(finished), 'checkpoint.pt'), 'r+b') as f:
        f.truncate(1000)
    before = snapshot(finished)
    err = one_line_error(capsys, ['--resume', '--out', finished, '--data-dir', cifar_root], 1)
    assert 'unreadable' in err and snapshot(finished) == before


@pytest.mark.exercise(*A_RUN, 'cosine_lr')
def test_a_checkpoint_from_an_older_train_py_is_refused(capsys, tiny, finished, cifar_root):
    """One without the fp16 scaler's state and the last predictions, as train.py wrote them before."""
    state = checkpoint(unfinished(finished))
    del state['scaler'], state['val_pred']
    torch.save(state, os.path.join(finished, 'checkpoint.pt'))
    before = snapshot(finished)
    err = one_line_error(capsys, ['--resume', '--out', finished, '--data-dir', cifar_root], 1)
    assert 'has no scaler, val_pred: it is from an older train.py' in err and snapshot(finished) == before


def test_a_missing_data_set_offline_is_one_line_and_writes_nothing(capsys, tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(download, 'URL', (tmp_path / 'offline').as_uri())  # stands for an unreachable server
    err = one_line_error(capsys, ['--data-dir', str(tmp_path / 'data'), '--out', str(tmp_path / 'run')], 1)
    assert 'could not download CIFAR-10' in err and 'cifar-10-python.tar.gz' in err
    assert not (tmp_path / 'run').exists()


def test_a_truncated_batch_file_is_one_line_and_writes_nothing(capsys, tiny, tmp_path):
    make_cifar(str(tmp_path))
    path = tmp_path / 'cifar-10-batches-py' / 'test_batch'
    path.write_bytes(path.read_bytes()[:1000])
    err = one_line_error(capsys, ['--data-dir', str(tmp_path), '--out', str(tmp_path / 'run')], 1)
    assert 'test_batch is not a CIFAR-10 batch file' in err and not (tmp_path / 'run').exists()


@pytest.mark.exercise('balanced_split')
@pytest.mark.parametrize('flags', [['--train-subset', '201'], ['--eval-subset', '51']])
def test_a_subset_larger_than_the_data_is_one_line_and_writes_nothing(capsys, tiny, cifar_root, tmp_path, flags):
    """Only the data set knows how many images there are: 200 training images in the fake one."""
    out = tmp_path / 'never'
    err = one_line_error(capsys, flags + ['--data-dir', cifar_root, '--out', str(out), '--device', 'cpu'], 1)
    assert flags[0] in err and 'more than the' in err and not out.exists()


def test_default_folder_is_named_after_the_training_flags_that_differ(monkeypatch):
    args = flags.parser().parse_args(['--lr', '0.1', '--epochs', '15', '--erase-scale', '0.1', '0.2', '--cosine',
                                            '--device', 'cpu', '--compile'])
    assert flags.default_out(args) == 'runs/lr0.1-epochs15-cosine-erase-scale0.1-0.2'
    assert flags.default_out(flags.parser().parse_args([])) == 'runs/baseline'


# ---------------------------------------------------------------------------------------------
# One process per run, a full disk, a run that diverges, make status, the GPU pool.

SLOW_TINY = ['--lr', '0.05', '--batch-size', '25', '--precision', 'fp16', '--device', 'cpu']  # fp16: emulated, slower


def wait_for(condition, what, timeout=300):
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, f'timed out waiting for {what}'
        time.sleep(0.05)


@pytest.mark.exercise(*A_RUN)
@pytest.mark.slow
def test_a_second_process_on_a_run_s_folder_is_refused_at_once(capsys, tiny, cifar_root, tmp_path):
    """Two processes on one folder: the second gets one line naming the folder and the process that
    holds it, and exits 1 within seconds, touching nothing; for a new run, --resume and --force
    alike. The first finishes, each epoch once in metrics.jsonl. A holder killed with -9 leaves no
    lock behind: --resume starts at once."""
    out = str(tmp_path / 'run')
    args = [*SLOW_TINY, '--epochs', '6', '--data-dir', cifar_root, '--out', out]
    first = train_py(*args, wait=False, tiny=True)
    wait_for(lambda: os.path.exists(os.path.join(out, 'config.json')), 'the first run to start')
    os.kill(first.pid, signal.SIGSTOP)  # frozen mid-run, holding its lock, however fast this machine is
    before = snapshot(out)
    try:
        # The holder stays frozen until the end of this block: a second process that waited for the lock
        # would never return (train_py's 600 s timeout would fail the test), so its return is the proof.
        second = train_py(*args, tiny=True)
        holder = f'pid {first.pid} on {socket.gethostname()}'
        assert second.returncode == 1 and second.stderr.splitlines() == [
            f'train.py: error: {out} is being trained by {holder}; wait for it, or stop that process first']
        for more in (['--resume'], ['--force']):
            assert holder in one_line_error(capsys, [*args, *more], 1)
        assert snapshot(out) == before
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert first.wait(timeout=300) == 0, first.stderr.read()
    assert [row['epoch'] for row in metrics(out)] == [1, 2, 3, 4, 5, 6]

    out = str(tmp_path / 'killed')
    killed = train_py(*args, '--epochs', '20', '--out', out, wait=False, tiny=True)  # long enough to be killed mid-run
    wait_for(lambda: os.path.exists(os.path.join(out, 'checkpoint.pt')), 'its first epoch')
    killed.kill()
    killed.wait()
    assert runs.state(out) == 'interrupted' and locks.holder(os.path.join(out, 'lock')) is None
    tiny('--resume', '--out', out, '--data-dir', cifar_root)
    assert 'epoch 1 of 20' not in capsys.readouterr().out and runs.state(out) == 'finished'


def mounted_tmpfs(folder, kilobytes):
    """A real small file system at `folder`, or a skip where mounting is not allowed."""
    os.makedirs(folder)
    mounted = subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={kilobytes}k', 'tmpfs', str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode:
        pytest.skip(f'cannot mount a tmpfs here ({mounted.stderr.strip()}): the out-of-space test needs root')


@pytest.mark.exercise(*A_RUN)
@pytest.mark.slow
def test_a_full_disk_stops_the_run_with_one_line_and_its_last_checkpoint_whole(capsys, tiny, cifar_root, tmp_path):
    """A tmpfs with room for one checkpoint and a half: the first is written, the second cannot be.
    The run stops with one line naming the folder and the space a checkpoint needs; no .tmp is left
    to keep the disk full; the first checkpoint is whole, and --resume continues once space is freed,
    to the run never interrupted."""
    args = ['--epochs', '3', '--train-subset', '100', '--eval-subset', '30', '--batch-size', '40', '--erase-p', '0.5',
            '--precision', 'fp32', '--device', 'cpu', '--data-dir', cifar_root]
    whole = str(tmp_path / 'whole')
    tiny(*args, '--out', whole)
    size = os.path.getsize(os.path.join(whole, 'checkpoint.pt'))
    disk = tmp_path / 'disk'
    mounted_tmpfs(disk, 2048)
    try:
        out = str(disk / 'run')
        page = 4096  # tmpfs hands out whole pages: config.json, metrics.jsonl, the lock, a checkpoint and a half
        filler = disk / 'filler'
        filler.write_bytes(b'\0' * (2048 * 1024 - page * (3 + (size + page - 1) // page * 3 // 2)))
        err = one_line_error(capsys, [*args, '--out', out], 1)
        assert f'no space left in {out} to write checkpoint.pt; a checkpoint of this run needs {size / 1024:.0f} kB' in err
        assert f'python train.py --resume --out {out}' in err
        assert sorted(os.listdir(out)) == ['checkpoint.pt', 'config.json', 'lock', 'metrics.jsonl']  # no .tmp
        assert checkpoint(out)['epoch'] == 1 and len(metrics(out)) == 1
        filler.unlink()
        tiny('--resume', '--out', out, '--data-dir', cifar_root)
        assert without_seconds(metrics(out)) == without_seconds(metrics(whole))
    finally:
        subprocess.run(['umount', str(disk)], check=True)


@pytest.mark.exercise(*A_RUN)
@pytest.mark.parametrize('precision', ['fp32', 'fp16'])
def test_a_run_that_diverges_stops_and_says_so(capsys, tiny, cifar_root, tmp_path, precision):
    """A learning rate of 1e12 makes the loss nan or inf within an epoch or two: the run stops there with
    one line and exit status 3 (a result, not an error: make goes on with the study), and its summary
    says at which epoch, so that make does not start it again and report.py shows it as diverged;
    --resume says so too, and --force starts it over."""
    out = str(tmp_path / 'run')
    args = ['--epochs', '5', '--lr', '1e12', '--train-subset', '50', '--precision', precision, '--device', 'cpu',
            '--data-dir', cifar_root, '--out', out]
    err = one_line_error(capsys, args, train.DIVERGED)
    epoch = json.load(open(os.path.join(out, 'summary.json')))['diverged_at']
    assert f'{out} diverged at epoch {epoch}: training loss' in err and 'try a lower --lr than 1000000000000.0' in err
    assert epoch < 5 and [row['epoch'] for row in metrics(out)] == list(range(1, epoch + 1))
    last = metrics(out)[-1]
    assert not (math.isfinite(last['train_loss']) and math.isfinite(last['val_loss']))
    assert runs.state(out) == 'diverged'
    tiny('--resume', '--out', out)
    assert 'has diverged (summary.json): nothing to resume' in capsys.readouterr().out
    tiny(*args[:2], '--lr', '0.05', *args[4:], '--force')
    assert runs.state(out) == 'finished'


@pytest.mark.exercise(*A_RUN)
def test_a_run_whose_validation_loss_alone_is_no_number_has_diverged(capsys, tiny, cifar_root, tmp_path, monkeypatch):
    """Training's loss can stay finite while the model in evaluation mode gives nan (its running
    statistics overflowed, say): that run has diverged as much, and stops at that epoch."""
    evaluated = []

    def evaluate(*args):
        loss, acc, pred = real(*args)
        evaluated.append(loss)
        return (math.nan if len(evaluated) == 2 else loss), acc, pred
    real = train.evaluate
    monkeypatch.setattr(train, 'evaluate', evaluate)
    out = str(tmp_path / 'run')
    one_line_error(capsys, ['--epochs', '4', '--train-subset', '50', '--device', 'cpu', '--data-dir', cifar_root,
                            '--out', out], train.DIVERGED)
    assert json.load(open(os.path.join(out, 'summary.json')))['diverged_at'] == 2
    assert math.isfinite(metrics(out)[-1]['train_loss']) and math.isnan(metrics(out)[-1]['val_loss'])


@pytest.mark.exercise('train_one_epoch')
def test_an_overflowing_fp16_step_is_not_divergence(monkeypatch):
    """In fp16 the scaler skips a step whose loss overflowed, and the model is as it was: the
    epoch's loss is that of the other batches, a number, and the run goes on. Two batches of six
    overflow here (inputs of 1e6); torch's reference path, written out, gives each batch's loss."""
    monkeypatch.setattr(train, 'ResNet18', TinyNet)
    model, _, optimizer, scaler = train.build(0, 0.05, 0.9, 5e-4, 'fp16', torch.device('cpu'))
    reference = copy.deepcopy(model)
    plain_sgd, plain_scaler = torch.optim.SGD(reference.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4), \
        torch.amp.GradScaler('cpu')
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(16, 3, 32, 32, generator=g) * (1e6 if step in (0, 3) else 1),
                torch.randint(0, 10, (16,), generator=g)) for step in range(6)]
    loss, _ = train.train_one_epoch(model, optimizer, scaler, batches, torch.autocast('cpu', dtype=torch.float16))
    losses = []
    for x, y in batches:
        plain_sgd.zero_grad()
        with torch.autocast('cpu', dtype=torch.float16):
            batch_loss = F.cross_entropy(reference(x), y)
        losses.append(batch_loss.item())
        plain_scaler.scale(batch_loss).backward()
        plain_scaler.step(plain_sgd)
        plain_scaler.update()
    assert [math.isfinite(v) for v in losses] == [False, True, True, False, True, True]
    assert loss == pytest.approx(sum(v for v in losses if math.isfinite(v)) / 4, rel=1e-3)
    assert scaler.get_scale() == 2.0 ** 14  # halved at each of the two overflows: skipped, not applied


def test_status_gives_an_ended_run_s_time_in_all_and_an_unended_one_s_so_far(tmp_path):
    """make status's line of each run folder, written by hand at a second an epoch: a finished run
    and a diverged one have ended, and their time is in all; an interrupted run's is so far."""
    finished, diverged, interrupted = (str(tmp_path / name) for name in ('finished', 'diverged', 'interrupted'))
    write_run(finished, {'epochs': 2}, (0.5, 0.6))
    write_run(diverged, {'epochs': 5}, (0.3, 0.1), summary='diverged')
    write_run(interrupted, {'epochs': 5}, (0.5, 0.6, 0.7), summary=False)
    (tmp_path / 'interrupted/checkpoint.pt').write_bytes(b'')
    assert status.status(finished) == [finished, 'finished', 'epoch 2/2', 'val acc 60.00%', '0:00:02 in all']
    assert status.status(diverged) == [diverged, 'diverged', 'epoch 2/5', 'val acc 10.00%', '0:00:02 in all']
    assert status.status(interrupted) == [interrupted, 'interrupted', 'epoch 3/5', 'val acc 70.00%', '0:00:03 so far']


def status_lines(runs_dir, *make_args):
    """{run folder: the cells of its line of make status}, cells being two spaces or more apart."""
    shown = subprocess.run([*MAKE, 'status', f'RUNS={runs_dir}', *make_args],
                           capture_output=True, text=True, check=True).stdout
    return {line.split()[0]: re.split(r'\s{2,}', line)[1:] for line in shown.splitlines()}


@pytest.mark.exercise(*A_RUN, 'cosine_lr')
@pytest.mark.slow
def test_status_tells_each_run_of_a_study_in_progress(tiny, cifar_root, tmp_path):
    """The lr sweep with two seeds: finished, interrupted, running, diverged, not started. A running
    run is told from an interrupted one by its lock: killed, it is interrupted at once."""
    sweep = tmp_path / 'runs' / 'lr-sweep'
    tiny(*QUICK, '--data-dir', cifar_root, '--out', str(sweep / 'lr0.1/seed0'))
    tiny(*QUICK, '--data-dir', cifar_root, '--out', str(sweep / 'lr0.1/seed1'))
    unfinished(str(sweep / 'lr0.1/seed1'))
    with pytest.raises(SystemExit):
        tiny('--lr', '1e12', '--epochs', '5', '--train-subset', '50', '--device', 'cpu', '--precision', 'fp32',
             '--data-dir', cifar_root, '--out', str(sweep / 'lr0.01/seed1'))
    running = train_py(*SLOW_TINY, '--epochs', '1000', '--data-dir', cifar_root, '--out', str(sweep / 'lr0.01/seed0'),
                       wait=False, tiny=True)
    try:
        wait_for(lambda: len(runs.read_metrics(sweep / 'lr0.01/seed0')) >= 2, 'two epochs of the running run')
        lines = status_lines(tmp_path / 'runs', 'EXP=lr-sweep', 'SEEDS=0 1')
    finally:
        running.kill()
        running.wait()
    assert len(lines) == 6
    last = metrics(sweep / 'lr0.1/seed0')[-1]
    assert lines[str(sweep / 'lr0.1/seed0')][:3] == ['finished', 'epoch 2/2', f'val acc {100 * last["val_acc"]:.2f}%']
    assert lines[str(sweep / 'lr0.1/seed0')][3].endswith(' in all')
    assert lines[str(sweep / 'lr0.1/seed1')][:2] == ['interrupted', 'epoch 2/2']
    assert lines[str(sweep / 'lr0.1/seed1')][3].endswith(' so far')
    diverged_at = json.load(open(sweep / 'lr0.01/seed1/summary.json'))['diverged_at']
    assert lines[str(sweep / 'lr0.01/seed1')][:2] == ['diverged', f'epoch {diverged_at}/5']
    state, epoch, _, time_taken = lines[str(sweep / 'lr0.01/seed0')]
    assert state == f'running (pid {running.pid} on {socket.gethostname()})' and epoch.endswith('/1000')
    assert re.fullmatch(r'\d+:\d\d:\d\d so far, \d+:\d\d:\d\d left', time_taken), time_taken
    assert lines[str(sweep / 'lr0.001/seed0')] == ['not started']
    after = status_lines(tmp_path / 'runs', 'EXP=lr-sweep', 'SEEDS=0 1')[str(sweep / 'lr0.01/seed0')]
    assert after[0] == 'interrupted' and 'left' not in after[-1]


@pytest.mark.exercise(*A_RUN)
@pytest.mark.slow
def test_the_gpu_pool_gives_each_run_a_gpu_no_other_run_holds(cifar_root, tmp_path):
    """Two GPUs, four runs, no GPU needed: a pool is locks, and each run records the GPU it took.
    A long run takes GPU 0, a short one GPU 1 and ends; the third, which a plan fixed in advance
    (0, 1, 0, 1) would put on busy GPU 0, takes GPU 1; the fourth finds both held, says it waits,
    and takes GPU 1 when the third stops. No two runs held one GPU at once."""
    env = {'GPU_LOCKS': str(tmp_path / 'locks')}
    start = lambda name, epochs: train_py(*SLOW_TINY, '--epochs', str(epochs), '--gpu-pool', '0', '1', '--data-dir',
                                          cifar_root, '--out', str(tmp_path / name), wait=False, tiny=True, env=env)
    config = lambda name: json.load(open(tmp_path / name / 'config.json'))
    first = start('first', 1000)  # the long runs are stopped by the test, once the others are done
    wait_for(lambda: os.path.exists(tmp_path / 'first/config.json'), 'the first run')
    assert start('second', 1).wait(timeout=300) == 0
    third = start('third', 1000)
    wait_for(lambda: os.path.exists(tmp_path / 'third/config.json'), 'the third run')
    fourth = start('fourth', 1)
    assert fourth.stdout.readline() == 'waiting for a free GPU: 0 1 are all held by other runs of this project\n'
    ended = {}
    for name, run in (('third', third), ('fourth', fourth), ('first', first)):
        if name != 'fourth':  # a clean stop, as Ctrl-C or Slurm's would be
            run.terminate()
        run.wait(timeout=300)
        ended[name] = runs.now()
    assert fourth.returncode == 0 and first.returncode == third.returncode == 130, 'a long run ended on its own'
    assert [config(name)['cuda_visible_devices'] for name in ('first', 'second', 'third', 'fourth')] == ['0', '1', '1', '1']
    held = {}  # GPU: [(took it, gave it back)], from when each run started and ended
    for name in ('first', 'second', 'third', 'fourth'):
        end = ended.get(name) or json.load(open(tmp_path / name / 'summary.json'))['finished']
        held.setdefault(config(name)['cuda_visible_devices'], []).append((config(name)['started'], end))
    for gpu, spans in held.items():
        spans.sort()
        assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:])), (gpu, spans)
