"""train.py promises: a run writes every file it names; the same flags give the same run; a run
killed and resumed is the run never interrupted; bad input is one line and changes nothing."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import data
import train
from conftest import ROOT, make_cifar
from schedule import cosine_lr

FLAGS = ['--epochs', '3', '--cosine', '--lr', '0.05', '--wd', '5e-4', '--erase-p', '0.5', '--device', 'cpu']
METRIC_KEYS = {'epoch', 'lr', 'train_loss', 'train_acc', 'val_loss', 'val_acc', 'seconds'}


def train_py(*args, wait=True):
    cmd = [sys.executable, os.path.join(ROOT, 'train.py'), *args]
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def metrics(out):
    with open(os.path.join(out, 'metrics.jsonl')) as f:
        return [json.loads(line) for line in f]


def without_seconds(rows):
    return [{k: v for k, v in row.items() if k != 'seconds'} for row in rows]


def final_weights(out):
    return torch.load(os.path.join(out, 'checkpoint.pt'), weights_only=True)['model']


def snapshot(folder):
    """Every file of a folder and its bytes: to show that nothing was changed."""
    return {name: open(os.path.join(folder, name), 'rb').read() for name in sorted(os.listdir(folder))}


@pytest.fixture(scope='module')
def finished_run(cifar_root, tmp_path_factory):
    out = str(tmp_path_factory.mktemp('runs') / 'ref')
    result = train_py(*FLAGS, '--data-dir', cifar_root, '--out', out)
    assert result.returncode == 0, result.stderr
    return out


def test_a_run_writes_every_file_with_every_key(finished_run, cifar_root):
    config = json.load(open(os.path.join(finished_run, 'config.json')))
    assert {'flags', 'torch', 'device', 'git_commit', 'precision_used'} <= set(config)
    assert config['flags']['lr'] == 0.05 and config['flags']['erase_p'] == 0.5 and config['torch'] == torch.__version__
    assert config['sizes'] == {'train': 200, 'val': 50, 'test': 50}  # a fifth of each class held out
    rows = metrics(finished_run)
    assert [row['epoch'] for row in rows] == [1, 2, 3] and all(set(row) == METRIC_KEYS for row in rows)
    assert [row['lr'] for row in rows] == [cosine_lr(e, 3, 0.05) for e in range(3)]
    assert all(0 <= row[k] <= 1 for row in rows for k in ('train_acc', 'val_acc'))
    summary = json.load(open(os.path.join(finished_run, 'summary.json')))
    assert {k: summary[k] for k in ('train_loss', 'train_acc', 'val_loss', 'val_acc')} == \
        {k: rows[-1][k] for k in ('train_loss', 'train_acc', 'val_loss', 'val_acc')}
    assert 0 <= summary['test_acc'] <= 1 and summary['test_loss'] > 0
    assert final_weights(finished_run).keys() == train.ResNet18().state_dict().keys()


def test_the_same_flags_give_the_same_run(finished_run, cifar_root, tmp_path):
    result = train_py(*FLAGS, '--data-dir', cifar_root, '--out', str(tmp_path / 'again'))
    assert result.returncode == 0, result.stderr
    assert without_seconds(metrics(tmp_path / 'again')) == without_seconds(metrics(finished_run))


def test_another_seed_gives_another_run(finished_run, cifar_root, tmp_path):
    result = train_py(*FLAGS, '--seed', '1', '--data-dir', cifar_root, '--out', str(tmp_path / 'seed1'))
    assert result.returncode == 0, result.stderr
    assert without_seconds(metrics(tmp_path / 'seed1')) != without_seconds(metrics(finished_run))


def wait_for_checkpoint(proc, out):
    """Wait until the run has saved its first epoch; then it is somewhere in its second."""
    deadline = time.time() + 300
    while not os.path.exists(os.path.join(out, 'checkpoint.pt')):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.02)


def test_killed_and_resumed_run_equals_the_run_never_interrupted(finished_run, cifar_root, tmp_path):
    out = str(tmp_path / 'killed')
    proc = train_py(*FLAGS, '--data-dir', cifar_root, '--out', out, wait=False)
    wait_for_checkpoint(proc, out)
    proc.kill()  # SIGKILL: no chance to clean up
    proc.wait()
    assert not os.path.exists(os.path.join(out, 'summary.json'))
    result = train_py('--resume', '--out', out, '--data-dir', cifar_root)  # flags from config.json
    assert result.returncode == 0, result.stderr
    assert without_seconds(metrics(out)) == without_seconds(metrics(finished_run))
    ours, reference = final_weights(out), final_weights(finished_run)
    assert all(torch.equal(ours[k], reference[k]) for k in reference)


def test_compile_learns_what_the_eager_model_learns(cifar_root, tmp_path):
    """--compile fuses kernels, so its sums round in another order: the same run, to rounding.
    fp32, so that rounding is ~1e-7 and not bf16's ~1e-3; one batch shape, so it compiles fast.
    Epoch 2's losses are those of the weights after a step, so they compare the updates too."""
    args = ['--epochs', '2', '--train-subset', '50', '--eval-subset', '50', '--batch-size', '50', '--lr', '0.05',
            '--erase-p', '0.5', '--precision', 'fp32', '--device', 'cpu', '--data-dir', cifar_root]
    eager = train_py(*args, '--out', str(tmp_path / 'eager'))
    compiled = train_py(*args, '--compile', '--out', str(tmp_path / 'compiled'))
    assert eager.returncode == 0 and compiled.returncode == 0, compiled.stderr
    for ours, reference in zip(metrics(tmp_path / 'compiled'), metrics(tmp_path / 'eager'), strict=True):
        for key in ('train_loss', 'val_loss'):
            assert ours[key] == pytest.approx(reference[key], rel=1e-4)


def test_compiled_run_killed_and_resumed_equals_the_run_never_interrupted(cifar_root, tmp_path):
    """A plain --resume keeps --compile, and each batch shape keeps its own kernels (75 images in
    batches of 50: a last batch of 25), so the resumed run rounds exactly as the original."""
    args = ['--epochs', '3', '--train-subset', '75', '--eval-subset', '50', '--batch-size', '50', '--precision', 'fp32',
            '--compile', '--device', 'cpu', '--data-dir', cifar_root]
    assert train_py(*args, '--out', str(tmp_path / 'whole')).returncode == 0
    out = str(tmp_path / 'killed')
    proc = train_py(*args, '--out', out, wait=False)
    wait_for_checkpoint(proc, out)
    proc.kill()
    proc.wait()
    assert not os.path.exists(os.path.join(out, 'summary.json'))
    result = train_py('--resume', '--out', out, '--data-dir', cifar_root)
    assert result.returncode == 0, result.stderr
    assert without_seconds(metrics(out)) == without_seconds(metrics(tmp_path / 'whole'))
    ours, reference = final_weights(out), final_weights(tmp_path / 'whole')
    assert all(torch.equal(ours[k], reference[k]) for k in reference)


def test_ctrl_c_keeps_the_last_epoch_and_says_how_to_resume(cifar_root, tmp_path):
    out = str(tmp_path / 'interrupted')
    proc = train_py(*FLAGS, '--data-dir', cifar_root, '--out', out, wait=False)
    wait_for_checkpoint(proc, out)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130 and 'Traceback' not in stderr
    assert f'python train.py --resume --out {out}' in stderr
    assert torch.load(os.path.join(out, 'checkpoint.pt'), weights_only=True)['epoch'] >= 1


def test_an_occupied_folder_is_refused_and_left_as_it_was(finished_run, cifar_root):
    before = snapshot(finished_run)
    result = train_py(*FLAGS, '--data-dir', cifar_root, '--out', finished_run)
    assert result.returncode == 2 and '--resume' in result.stderr and len(result.stderr.splitlines()) == 1
    assert snapshot(finished_run) == before


def test_force_starts_over(cifar_root, tmp_path):
    out = str(tmp_path / 'forced')
    args = ['--epochs', '1', '--train-subset', '20', '--data-dir', cifar_root, '--out', out, '--device', 'cpu']
    assert train_py(*args).returncode == 0
    result = train_py(*args, '--lr', '0.1', '--force')
    assert result.returncode == 0, result.stderr
    assert json.load(open(os.path.join(out, 'config.json')))['flags']['lr'] == 0.1 and len(metrics(out)) == 1


def one_line_error(capsys, argv, status=2):
    """Run train.main in this process; return its one-line error after checking the exit status."""
    with pytest.raises(SystemExit) as exit_info:
        train.main(argv)
    err = capsys.readouterr().err.strip() or str(exit_info.value.code)
    code = exit_info.value.code if isinstance(exit_info.value.code, int) else 1
    assert code == status and len(err.splitlines()) == 1 and 'Traceback' not in err, err
    return err


@pytest.mark.parametrize('flags, says', [
    (['--lr', '0'], '--lr'), (['--lr', '-0.1'], '--lr'), (['--lr', 'nan'], '--lr'), (['--lr', 'fast'], '--lr'),
    (['--epochs', '0'], '--epochs'), (['--epochs', '1.5'], '--epochs'), (['--batch-size', '-1'], '--batch-size'),
    (['--wd', '-1e-4'], '--wd'), (['--momentum', '-0.9'], '--momentum'),
    (['--erase-p', '1.5'], '--erase-p'), (['--erase-p', '-0.5'], '--erase-p'),
    (['--erase-scale', '0.5', '0.1'], '--erase-scale'), (['--erase-scale', '0', '0.3'], '--erase-scale'),
    (['--erase-scale', '0.5', '1.5'], '--erase-scale'), (['--erase-scale', '0.5'], '--erase-scale'),
    (['--erase-ratio', '3.3', '0.3'], '--erase-ratio'), (['--erase-ratio', '-1', '2'], '--erase-ratio'),
    (['--train-subset', '0'], '--train-subset'), (['--eval-subset', '-5'], '--eval-subset'),
    (['--train-subset', '201'], '--train-subset'), (['--eval-subset', '51'], '--eval-subset'),
    (['--precision', 'fp16'], '--precision'), (['--device', 'tpu'], '--device'), (['--lrate', '0.1'], '--lrate'),
    (['--seed', '-1'], '--seed'),
])
def test_each_bad_flag_is_one_line_and_status_2(capsys, cifar_root, tmp_path, flags, says):
    out = tmp_path / 'never'
    assert says in one_line_error(capsys, flags + ['--data-dir', cifar_root, '--out', str(out), '--device', 'cpu']
                                  if '--device' not in flags else flags + ['--out', str(out)])
    assert not out.exists()


def test_bad_flag_from_the_shell_prints_no_traceback(cifar_root):
    result = train_py('--erase-p', '2', '--data-dir', cifar_root)
    assert result.returncode == 2 and result.stderr.splitlines() == [
        'train.py: error: --erase-p must be within [0, 1], got 2.0 (see --help)']


def test_missing_data_set_offline_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(data, 'URL', (tmp_path / 'offline').as_uri())  # stands for an unreachable server
    err = one_line_error(capsys, ['--data-dir', str(tmp_path / 'data'), '--out', str(tmp_path / 'run')], status=1)
    assert 'could not download CIFAR-10' in err and 'cifar-10-python.tar.gz' in err
    assert not (tmp_path / 'run').exists()


def test_truncated_batch_file_is_one_line_and_writes_nothing(capsys, tmp_path):
    make_cifar(str(tmp_path))
    path = tmp_path / 'cifar-10-batches-py' / 'test_batch'
    path.write_bytes(path.read_bytes()[:1000])
    err = one_line_error(capsys, ['--data-dir', str(tmp_path), '--out', str(tmp_path / 'run')], status=1)
    assert 'test_batch is not a CIFAR-10 batch file' in err and not (tmp_path / 'run').exists()


def test_checkpoint_of_another_configuration_is_refused(capsys, finished_run, cifar_root, tmp_path):
    other = str(tmp_path / 'other')
    assert train_py('--epochs', '2', '--data-dir', cifar_root, '--out', other, '--device', 'cpu').returncode == 0
    os.remove(os.path.join(other, 'summary.json'))  # unfinished, then given a foreign checkpoint
    with open(os.path.join(finished_run, 'checkpoint.pt'), 'rb') as src, open(os.path.join(other, 'checkpoint.pt'), 'wb') as dst:
        dst.write(src.read())
    before = snapshot(other)
    err = one_line_error(capsys, ['--resume', '--out', other, '--data-dir', cifar_root], status=1)
    assert 'another configuration' in err and snapshot(other) == before


def test_unreadable_checkpoint_is_refused(capsys, cifar_root, tmp_path):
    out = str(tmp_path / 'broken')
    assert train_py('--epochs', '2', '--data-dir', cifar_root, '--out', out, '--device', 'cpu').returncode == 0
    os.remove(os.path.join(out, 'summary.json'))
    with open(os.path.join(out, 'checkpoint.pt'), 'r+b') as f:
        f.truncate(1000)
    before = snapshot(out)
    err = one_line_error(capsys, ['--resume', '--out', out, '--data-dir', cifar_root], status=1)
    assert 'unreadable' in err and snapshot(out) == before


def test_resume_refuses_flags_that_contradict_the_run(capsys, finished_run, cifar_root):
    before = snapshot(finished_run)
    os.rename(os.path.join(finished_run, 'summary.json'), os.path.join(finished_run, 'summary.bak'))
    try:
        err = one_line_error(capsys, ['--resume', '--out', finished_run, '--lr', '0.1', '--data-dir', cifar_root])
        assert '--lr 0.1 differs' in err
        assert 'nothing to resume' in one_line_error(capsys, ['--resume', '--out', os.path.join(finished_run, 'none')])
    finally:
        os.rename(os.path.join(finished_run, 'summary.bak'), os.path.join(finished_run, 'summary.json'))
    assert snapshot(finished_run) == before
