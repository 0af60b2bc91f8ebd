"""runs.py promises a run folder that holds everything a run did; a run killed at any moment and
resumed that is the run never interrupted, in every precision, compiled or not; and bad input
that is one line, an exit status, and no file touched."""
import json
import os
import signal
import time

import pytest
import torch
import torch.nn.functional as F

import data
import runs
import train
from conftest import DEVICES, TinyNet, make_cifar, metrics, snapshot, train_py, without_seconds

QUICK = ['--epochs', '2', '--cosine', '--lr', '0.05', '--erase-p', '0.5', '--train-subset', '100', '--eval-subset', '30',
         '--batch-size', '40', '--precision', 'fp32', '--device', 'cpu']
METRIC_KEYS = {'epoch', 'lr', 'train_loss', 'train_acc', 'val_loss', 'val_acc', 'seconds'}


@pytest.fixture
def tiny(monkeypatch):
    """tiny(*argv): train.main in this process with TinyNet for ResNet-18, a run in a blink."""
    monkeypatch.setattr(train, 'ResNet18', TinyNet)
    return lambda *argv: train.main(list(argv))


@pytest.fixture
def finished(tiny, cifar_root, tmp_path):
    """The folder of a finished tiny run of QUICK."""
    out = str(tmp_path / 'finished')
    tiny(*QUICK, '--data-dir', cifar_root, '--out', out)
    return out


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
    assert sorted(os.listdir(finished)) == ['checkpoint.pt', 'config.json', 'metrics.jsonl', 'predictions.pt', 'summary.json']


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


def test_a_killed_and_resumed_run_is_the_run_never_interrupted(cifar_root, tmp_path):
    """fp16 with its loss scaler, and erasing, with the small network in processes of their own:
    a resume that forgot the momentum, the scaler's state (its count of steps since the last
    overflow decides when the scale next grows) or a generator would differ from the run never
    interrupted. fp16 is emulated on a CPU, and slow enough to be killed mid-run."""
    args = ['--epochs', '3', '--lr', '0.05', '--batch-size', '25', '--erase-p', '0.5', '--precision', 'fp16',
            '--device', 'cpu', '--data-dir', cifar_root]
    whole = str(tmp_path / 'whole')
    assert train_py(*args, '--out', whole, tiny=True).returncode == 0
    out = str(tmp_path / 'killed')
    kill_and_resume(args, out, cifar_root, tiny=True)
    assert_same_run(out, whole)
    assert checkpoint(whole)['scaler']['_growth_tracker'] == 3 * 200 // 25


@pytest.mark.slow
@pytest.mark.parametrize('device', DEVICES)
def test_a_killed_and_resumed_resnet18_run_is_the_run_never_interrupted(cifar_root, tmp_path, device):
    """ResNet-18 in the precision auto picks, on every device (on CUDA with --deterministic)."""
    args = ['--epochs', '3', '--cosine', '--lr', '0.02', '--wd', '5e-4', '--erase-p', '0.5', '--train-subset', '100',
            '--batch-size', '40', '--device', device, '--data-dir', cifar_root] + ['--deterministic'] * (device == 'cuda')
    assert train_py(*args, '--out', str(tmp_path / 'whole')).returncode == 0
    kill_and_resume(args, str(tmp_path / 'killed'), cifar_root)
    assert_same_run(tmp_path / 'killed', tmp_path / 'whole')


@pytest.mark.slow
def test_a_compiled_run_killed_and_resumed_is_the_run_never_interrupted(cifar_root, tmp_path):
    """A plain --resume keeps --compile, and each batch shape keeps its own kernels (75 images in
    batches of 50: a last batch of 25), so the resumed run rounds exactly as the original."""
    args = ['--epochs', '3', '--train-subset', '75', '--eval-subset', '50', '--batch-size', '50', '--precision', 'fp32',
            '--compile', '--device', 'cpu', '--data-dir', cifar_root]
    assert train_py(*args, '--out', str(tmp_path / 'whole')).returncode == 0
    kill_and_resume(args, str(tmp_path / 'killed'), cifar_root)
    assert_same_run(tmp_path / 'killed', tmp_path / 'whole')


@pytest.mark.slow
def test_ctrl_c_keeps_the_last_epoch_and_says_how_to_resume(cifar_root, tmp_path):
    out = str(tmp_path / 'interrupted')
    proc = train_py('--epochs', '3', '--train-subset', '100', '--device', 'cpu', '--data-dir', cifar_root, '--out', out,
                    wait=False)
    wait_for_checkpoint(proc, out)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130 and 'Traceback' not in stderr
    assert f'python train.py --resume --out {out}' in stderr
    assert checkpoint(out)['epoch'] >= 1


# ---------------------------------------------------------------------------------------------
# What --resume and --force may do, and bad input.


def one_line_error(capsys, run, argv, status):
    """Run train.main (through `run`) in this process; its one-line error, after checking the status."""
    with pytest.raises(SystemExit) as exit_info:
        run(*argv)
    err = capsys.readouterr().err.strip() or str(exit_info.value.code)
    code = exit_info.value.code if isinstance(exit_info.value.code, int) else 1
    assert code == status and len(err.splitlines()) == 1 and 'Traceback' not in err, err
    return err


def unfinished(folder):
    """Make a finished run look interrupted after its last epoch: no summary yet."""
    os.remove(os.path.join(folder, 'summary.json'))
    return folder


def test_an_occupied_folder_is_refused_and_left_as_it_was(capsys, tiny, finished, cifar_root):
    before = snapshot(finished)
    err = one_line_error(capsys, tiny, [*QUICK, '--data-dir', cifar_root, '--out', finished], 2)
    assert 'already holds a run' in err and '--resume' in err and snapshot(finished) == before


def test_force_starts_over(tiny, finished, cifar_root):
    tiny(*QUICK, '--lr', '0.1', '--epochs', '1', '--data-dir', cifar_root, '--out', finished, '--force')
    assert json.load(open(os.path.join(finished, 'config.json')))['flags']['lr'] == 0.1 and len(metrics(finished)) == 1


def test_resume_takes_the_run_s_own_flags(tiny, finished, cifar_root, capsys):
    unfinished(finished)
    tiny('--resume', '--out', finished, '--data-dir', cifar_root)  # nothing left but the test set: it finishes
    assert 'epoch 3 of 2' in capsys.readouterr().out and os.path.exists(os.path.join(finished, 'summary.json'))
    tiny('--resume', '--out', finished)
    assert 'is finished (summary.json): nothing to resume' in capsys.readouterr().out


def test_resume_refuses_flags_that_contradict_the_run(capsys, tiny, finished, cifar_root):
    before = snapshot(unfinished(finished))
    err = one_line_error(capsys, tiny, ['--resume', '--out', finished, '--lr', '0.1', '--data-dir', cifar_root], 2)
    assert '--lr 0.1 differs from its 0.05' in err
    err = one_line_error(capsys, tiny, ['--resume', '--out', os.path.join(finished, 'none')], 2)
    assert 'nothing to resume' in err and snapshot(finished) == before


def test_a_checkpoint_of_another_configuration_is_refused(capsys, tiny, finished, cifar_root, tmp_path):
    other = str(tmp_path / 'other')
    tiny(*QUICK, '--seed', '1', '--data-dir', cifar_root, '--out', other)
    os.replace(os.path.join(finished, 'checkpoint.pt'), os.path.join(unfinished(other), 'checkpoint.pt'))
    before = snapshot(other)
    err = one_line_error(capsys, tiny, ['--resume', '--out', other, '--data-dir', cifar_root], 1)
    assert 'another configuration (differs in: seed)' in err and snapshot(other) == before


def test_an_unreadable_checkpoint_is_refused(capsys, tiny, finished, cifar_root):
    with open(os.path.join(unfinished(finished), 'checkpoint.pt'), 'r+b') as f:
        f.truncate(1000)
    before = snapshot(finished)
    err = one_line_error(capsys, tiny, ['--resume', '--out', finished, '--data-dir', cifar_root], 1)
    assert 'unreadable' in err and snapshot(finished) == before


def test_a_checkpoint_from_an_older_train_py_is_refused(capsys, tiny, finished, cifar_root):
    """One without the fp16 scaler's state and the last predictions, as train.py wrote them before."""
    state = checkpoint(unfinished(finished))
    del state['scaler'], state['val_pred']
    torch.save(state, os.path.join(finished, 'checkpoint.pt'))
    before = snapshot(finished)
    err = one_line_error(capsys, tiny, ['--resume', '--out', finished, '--data-dir', cifar_root], 1)
    assert 'has no scaler, val_pred: it is from an older train.py' in err and snapshot(finished) == before


def test_a_missing_data_set_offline_is_one_line_and_writes_nothing(capsys, tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(data, 'URL', (tmp_path / 'offline').as_uri())  # stands for an unreachable server
    err = one_line_error(capsys, tiny, ['--data-dir', str(tmp_path / 'data'), '--out', str(tmp_path / 'run')], 1)
    assert 'could not download CIFAR-10' in err and 'cifar-10-python.tar.gz' in err
    assert not (tmp_path / 'run').exists()


def test_a_truncated_batch_file_is_one_line_and_writes_nothing(capsys, tiny, tmp_path):
    make_cifar(str(tmp_path))
    path = tmp_path / 'cifar-10-batches-py' / 'test_batch'
    path.write_bytes(path.read_bytes()[:1000])
    err = one_line_error(capsys, tiny, ['--data-dir', str(tmp_path), '--out', str(tmp_path / 'run')], 1)
    assert 'test_batch is not a CIFAR-10 batch file' in err and not (tmp_path / 'run').exists()


@pytest.mark.parametrize('flags', [['--train-subset', '201'], ['--eval-subset', '51']])
def test_a_subset_larger_than_the_data_is_one_line_and_writes_nothing(capsys, tiny, cifar_root, tmp_path, flags):
    """Only the data set knows how many images there are: 200 training images in the fake one."""
    out = tmp_path / 'never'
    err = one_line_error(capsys, tiny, flags + ['--data-dir', cifar_root, '--out', str(out), '--device', 'cpu'], 1)
    assert flags[0] in err and 'more than the' in err and not out.exists()


def test_default_folder_is_named_after_the_training_flags_that_differ(monkeypatch):
    args = train.build_parser().parse_args(['--lr', '0.1', '--epochs', '15', '--erase-scale', '0.1', '0.2', '--cosine',
                                            '--device', 'cpu', '--compile'])
    assert runs.default_out(args, train.build_parser().get_default) == 'runs/lr0.1-epochs15-cosine-erase-scale0.1-0.2'
    assert runs.default_out(train.build_parser().parse_args([]), train.build_parser().get_default) == 'runs/baseline'
