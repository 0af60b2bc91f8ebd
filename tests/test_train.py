"""train.py promises: a run learns and writes every file it names; the same flags give the same
run; a run killed and resumed is the run never interrupted, in every precision; bad input is one
line and changes nothing. The promises about a device hold on the CPU and, where there is one,
on a CUDA GPU."""
import functools
import json
import os
import pty
import signal
import subprocess
import sys
import time
import warnings

import pytest
import torch

import data
import hardware
import train
from conftest import CUDA, DEVICES, ROOT, TinyNet, make_cifar
from schedule import cosine_lr

# 100 of the fake data set's 200 training images, in batches of 40, 40 and a smaller last one of 20.
FLAGS = ['--epochs', '3', '--cosine', '--lr', '0.02', '--wd', '5e-4', '--erase-p', '0.5', '--train-subset', '100',
         '--batch-size', '40']
QUICK = ['--epochs', '1', '--train-subset', '20', '--eval-subset', '10', '--device', 'cpu']  # seconds: for runs only needed on disk
METRIC_KEYS = {'epoch', 'lr', 'train_loss', 'train_acc', 'val_loss', 'val_acc', 'seconds'}
# train.main with TinyNet in place of ResNet-18, in a process of its own: for fp16 on the CPU.
WITH_TINY_NET = ('import sys; sys.path[:0] = [{!r}, {!r}]; import train; from conftest import TinyNet; '
                 'train.ResNet18 = TinyNet; train.main(sys.argv[1:])').format(ROOT, os.path.join(ROOT, 'tests'))


def on(device):
    """The flags of a run on `device`. On CUDA with --deterministic: otherwise cuDNN may pick
    convolution algorithms that sum in another order from one run to the next."""
    return ['--device', device] + (['--deterministic'] if device == 'cuda' else [])


def train_py(*args, wait=True, tiny=False):
    cmd = [sys.executable, *(['-c', WITH_TINY_NET] if tiny else [os.path.join(ROOT, 'train.py')]), *args]
    if not wait:  # Ctrl-C as in a terminal, even when the tests run in a background job that ignores it
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def metrics(out):
    with open(os.path.join(out, 'metrics.jsonl')) as f:
        return [json.loads(line) for line in f]


def without_seconds(rows):
    return [{k: v for k, v in row.items() if k != 'seconds'} for row in rows]


def final_weights(out):
    return torch.load(os.path.join(out, 'checkpoint.pt'), weights_only=True, map_location='cpu')['model']


def snapshot(folder):
    """Every file of a folder and its bytes: to show that nothing was changed."""
    return {name: open(os.path.join(folder, name), 'rb').read() for name in sorted(os.listdir(folder))}


@pytest.fixture(scope='module')
def reference_run(cifar_root, tmp_path_factory):
    """reference_run(device): the folder of a finished run of FLAGS on that device, made once."""
    made = {}

    def on_device(device):
        if device not in made:
            out = str(tmp_path_factory.mktemp('runs') / f'ref-{device}')
            result = train_py(*FLAGS, *on(device), '--data-dir', cifar_root, '--out', out)
            assert result.returncode == 0, result.stderr
            made[device] = out
        return made[device]
    return on_device


@pytest.fixture
def finished_run(reference_run):
    return reference_run('cpu')


@pytest.mark.slow
@pytest.mark.parametrize('device', DEVICES)
def test_a_run_learns(reference_run, device):
    """The fake data set's classes are tinted: the network must learn them, on every device."""
    rows = metrics(reference_run(device))
    assert rows[-1]['train_loss'] < rows[0]['train_loss'] / 2 and rows[-1]['train_acc'] > 0.5
    assert rows[-1]['val_loss'] < rows[0]['val_loss']


@pytest.mark.slow
@pytest.mark.parametrize('device', DEVICES)
def test_a_run_writes_every_file_with_every_key(reference_run, cifar_root, device):
    run = reference_run(device)
    config = json.load(open(os.path.join(run, 'config.json')))
    assert {'flags', 'torch', 'device', 'device_name', 'compute_capability', 'git_commit'} <= set(config)
    assert config['flags']['lr'] == 0.02 and config['flags']['erase_p'] == 0.5 and config['torch'] == torch.__version__
    assert config['flags']['precision'] == hardware.pick_precision('auto', torch.device(device))  # auto, as picked
    if device == 'cuda':
        assert config['compute_capability'] == '{}.{}'.format(*torch.cuda.get_device_capability())
        assert config['device_name'] == torch.cuda.get_device_name()
    assert config['sizes'] == {'train': 100, 'val': 50, 'test': 50}  # a fifth of each class held out
    rows = metrics(run)
    assert [row['epoch'] for row in rows] == [1, 2, 3] and all(set(row) == METRIC_KEYS for row in rows)
    assert [row['lr'] for row in rows] == [cosine_lr(e, 3, 0.02) for e in range(3)]
    assert all(0 <= row[k] <= 1 for row in rows for k in ('train_acc', 'val_acc'))
    summary = json.load(open(os.path.join(run, 'summary.json')))
    assert {k: summary[k] for k in ('train_loss', 'train_acc', 'val_loss', 'val_acc')} == \
        {k: rows[-1][k] for k in ('train_loss', 'train_acc', 'val_loss', 'val_acc')}
    assert 0 <= summary['test_acc'] <= 1 and summary['test_loss'] > 0
    assert final_weights(run).keys() == train.ResNet18().state_dict().keys()


@pytest.mark.slow
def test_predictions_are_of_the_split_s_images_and_give_the_run_s_accuracies(finished_run, cifar_root):
    """predictions.pt: every validation and test image by its index in CIFAR-10, its true class and
    the class predicted after the last epoch; their accuracies are the ones the run reported."""
    saved = torch.load(os.path.join(finished_run, 'predictions.pt'), weights_only=True)
    train_x, train_y, _, test_y = data.load_cifar10(cifar_root, download=False)
    _, val_idx = data.split_for(train_y, seed=0)
    assert torch.equal(saved['val']['index'], val_idx) and torch.equal(saved['test']['index'], torch.arange(len(test_y)))
    assert torch.equal(saved['val']['label'].long(), train_y[val_idx]) and torch.equal(saved['test']['label'].long(), test_y)
    assert saved['val']['pred'].dtype == torch.int8 and saved['val']['index'].dtype == torch.int64
    summary = json.load(open(os.path.join(finished_run, 'summary.json')))
    for split in ('val', 'test'):
        right = (saved[split]['pred'] == saved[split]['label']).sum().item()
        assert right / len(saved[split]['label']) == summary[f'{split}_acc']


@pytest.mark.slow
@pytest.mark.parametrize('device', DEVICES)
def test_the_same_flags_give_the_same_run(reference_run, cifar_root, tmp_path, device):
    result = train_py(*FLAGS, *on(device), '--data-dir', cifar_root, '--out', str(tmp_path / 'again'))
    assert result.returncode == 0, result.stderr
    assert without_seconds(metrics(tmp_path / 'again')) == without_seconds(metrics(reference_run(device)))


@pytest.mark.slow
def test_another_seed_gives_another_run(finished_run, cifar_root, tmp_path):
    """Its first epoch already differs: another split, other initial weights, another order."""
    result = train_py(*FLAGS, '--epochs', '1', '--seed', '1', '--device', 'cpu', '--data-dir', cifar_root,
                      '--out', str(tmp_path / 'seed1'))
    assert result.returncode == 0, result.stderr
    first = without_seconds(metrics(finished_run))[0] | {'lr': None}
    assert without_seconds(metrics(tmp_path / 'seed1'))[0] | {'lr': None} != first


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
    assert not os.path.exists(os.path.join(out, 'summary.json'))
    result = train_py('--resume', '--out', out, '--data-dir', cifar_root, tiny=tiny)
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
@pytest.mark.parametrize('device', DEVICES)
def test_killed_and_resumed_run_equals_the_run_never_interrupted(reference_run, cifar_root, tmp_path, device):
    out = str(tmp_path / 'killed')
    kill_and_resume([*FLAGS, *on(device), '--data-dir', cifar_root], out, cifar_root)
    assert without_seconds(metrics(out)) == without_seconds(metrics(reference_run(device)))
    ours, reference = final_weights(out), final_weights(reference_run(device))
    assert all(torch.equal(ours[k], reference[k]) for k in reference)
    saved = [torch.load(os.path.join(run, 'predictions.pt'), weights_only=True) for run in (out, reference_run(device))]
    assert all(torch.equal(saved[0][s]['pred'], saved[1][s]['pred']) for s in ('val', 'test'))


@pytest.mark.slow
def test_fp16_run_killed_and_resumed_equals_the_run_never_interrupted(cifar_root, tmp_path):
    """fp16 with its GradScaler, on the CPU with the small network. The scaler's state is part of
    the run: its step counter since the last overflow decides when the scale next grows, and a
    resume that forgot it would count from zero again."""
    args = ['--epochs', '3', '--lr', '0.05', '--batch-size', '25', '--precision', 'fp16', '--device', 'cpu',
            '--data-dir', cifar_root]
    whole = str(tmp_path / 'whole')
    assert train_py(*args, '--out', whole, tiny=True).returncode == 0
    out = str(tmp_path / 'killed')
    kill_and_resume(args, out, cifar_root, tiny=True)
    assert without_seconds(metrics(out)) == without_seconds(metrics(whole))
    ours, reference = (torch.load(os.path.join(run, 'checkpoint.pt'), weights_only=True) for run in (out, whole))
    assert all(torch.equal(ours['model'][k], reference['model'][k]) for k in reference['model'])
    assert ours['scaler'] == reference['scaler'] and reference['scaler']['_growth_tracker'] == 3 * 200 // 25


@pytest.mark.slow
def test_compile_learns_what_the_eager_model_learns(tmp_path):
    """--compile fuses kernels, so its sums round in another order: the same run, to rounding.
    fp32, so that rounding is ~1e-7 and not bf16's ~1e-3; one batch shape, so it compiles fast.
    Epoch 2's losses are those of the weights after a step, so they compare the updates too.
    Untinted images: on the tinted ones the first step falls so steeply (loss 2.4 to 1.8) that it
    magnifies the rounding 100 times, and the comparison would say less."""
    make_cifar(str(tmp_path), tint=False)
    args = ['--epochs', '2', '--train-subset', '50', '--eval-subset', '50', '--batch-size', '50', '--lr', '0.05',
            '--erase-p', '0.5', '--precision', 'fp32', '--device', 'cpu', '--data-dir', str(tmp_path)]
    eager = train_py(*args, '--out', str(tmp_path / 'eager'))
    compiled = train_py(*args, '--compile', '--out', str(tmp_path / 'compiled'))
    assert eager.returncode == 0 and compiled.returncode == 0, compiled.stderr
    for ours, reference in zip(metrics(tmp_path / 'compiled'), metrics(tmp_path / 'eager'), strict=True):
        for key in ('train_loss', 'val_loss'):
            assert ours[key] == pytest.approx(reference[key], rel=1e-4)


@pytest.mark.slow
def test_compiled_run_killed_and_resumed_equals_the_run_never_interrupted(cifar_root, tmp_path):
    """A plain --resume keeps --compile, and each batch shape keeps its own kernels (75 images in
    batches of 50: a last batch of 25), so the resumed run rounds exactly as the original."""
    args = ['--epochs', '3', '--train-subset', '75', '--eval-subset', '50', '--batch-size', '50', '--precision', 'fp32',
            '--compile', '--device', 'cpu', '--data-dir', cifar_root]
    assert train_py(*args, '--out', str(tmp_path / 'whole')).returncode == 0
    out = str(tmp_path / 'killed')
    kill_and_resume(args, out, cifar_root)
    assert without_seconds(metrics(out)) == without_seconds(metrics(tmp_path / 'whole'))
    ours, reference = final_weights(out), final_weights(tmp_path / 'whole')
    assert all(torch.equal(ours[k], reference[k]) for k in reference)


@pytest.mark.parametrize('deterministic', [False, True])
def test_deterministic_chooses_repeatable_kernels_and_otherwise_lets_cudnn_time_them(
        cifar_root, tmp_path, monkeypatch, deterministic):
    """What --deterministic changes is global to the process, so it is checked here, in the run's
    own process; on a GPU the repeatability it buys is checked by the tests above."""
    monkeypatch.setattr(torch.backends.cudnn, 'benchmark', False)
    monkeypatch.delenv('CUBLAS_WORKSPACE_CONFIG', raising=False)
    try:
        train.main([*QUICK, '--data-dir', cifar_root, '--out', str(tmp_path / 'run')] + ['--deterministic'] * deterministic)
        assert torch.are_deterministic_algorithms_enabled() == deterministic
        assert torch.backends.cudnn.benchmark == (not deterministic)
        assert (os.environ.get('CUBLAS_WORKSPACE_CONFIG') == ':4096:8') == deterministic
    finally:
        torch.use_deterministic_algorithms(False)


@pytest.mark.slow
def test_ctrl_c_keeps_the_last_epoch_and_says_how_to_resume(cifar_root, tmp_path):
    out = str(tmp_path / 'interrupted')
    proc = train_py(*FLAGS, '--device', 'cpu', '--data-dir', cifar_root, '--out', out, wait=False)
    wait_for_checkpoint(proc, out)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130 and 'Traceback' not in stderr
    assert f'python train.py --resume --out {out}' in stderr
    assert torch.load(os.path.join(out, 'checkpoint.pt'), weights_only=True)['epoch'] >= 1


@pytest.mark.slow
def test_an_occupied_folder_is_refused_and_left_as_it_was(finished_run, cifar_root):
    before = snapshot(finished_run)
    result = train_py(*FLAGS, '--device', 'cpu', '--data-dir', cifar_root, '--out', finished_run)
    assert result.returncode == 2 and '--resume' in result.stderr and len(result.stderr.splitlines()) == 1
    assert snapshot(finished_run) == before


@pytest.mark.slow
def test_force_starts_over(cifar_root, tmp_path):
    out = str(tmp_path / 'forced')
    args = [*QUICK, '--data-dir', cifar_root, '--out', out]
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
    (['--precision', 'fp8'], '--precision'), (['--device', 'tpu'], '--device'), (['--device', 'mps'], '--device'),
    (['--device', 'cuda:x'], '--device'), (['--lrate', '0.1'], '--lrate'),
    (['--seed', '-1'], '--seed'),
])
def test_each_bad_flag_is_one_line_and_status_2(capsys, cifar_root, tmp_path, flags, says):
    out = tmp_path / 'never'
    assert says in one_line_error(capsys, flags + ['--data-dir', cifar_root, '--out', str(out), '--device', 'cpu']
                                  if '--device' not in flags else flags + ['--out', str(out)])
    assert not out.exists()


@pytest.mark.parametrize('flags', [['--train-subset', '201'], ['--eval-subset', '51']])
def test_a_subset_larger_than_the_data_is_one_line_and_status_1(capsys, cifar_root, tmp_path, flags):
    """Only the data set knows how many images there are: 200 training images in the fake one."""
    out = tmp_path / 'never'
    err = one_line_error(capsys, flags + ['--data-dir', cifar_root, '--out', str(out), '--device', 'cpu'], status=1)
    assert flags[0] in err and 'more than the' in err and not out.exists()


@pytest.mark.slow
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


@pytest.mark.slow
def test_checkpoint_of_another_configuration_is_refused(capsys, finished_run, cifar_root, tmp_path):
    other = str(tmp_path / 'other')
    assert train_py(*QUICK, '--data-dir', cifar_root, '--out', other).returncode == 0
    os.remove(os.path.join(other, 'summary.json'))  # unfinished, then given a foreign checkpoint
    with open(os.path.join(finished_run, 'checkpoint.pt'), 'rb') as src, open(os.path.join(other, 'checkpoint.pt'), 'wb') as dst:
        dst.write(src.read())
    before = snapshot(other)
    err = one_line_error(capsys, ['--resume', '--out', other, '--data-dir', cifar_root], status=1)
    assert 'another configuration' in err and snapshot(other) == before


@pytest.mark.slow
def test_unreadable_checkpoint_is_refused(capsys, cifar_root, tmp_path):
    out = str(tmp_path / 'broken')
    assert train_py(*QUICK, '--data-dir', cifar_root, '--out', out).returncode == 0
    os.remove(os.path.join(out, 'summary.json'))
    with open(os.path.join(out, 'checkpoint.pt'), 'r+b') as f:
        f.truncate(1000)
    before = snapshot(out)
    err = one_line_error(capsys, ['--resume', '--out', out, '--data-dir', cifar_root], status=1)
    assert 'unreadable' in err and snapshot(out) == before


@pytest.mark.slow
def test_checkpoint_from_an_older_train_py_is_refused(capsys, cifar_root, tmp_path):
    """One without the fp16 scaler's state and the last predictions, as train.py wrote them before."""
    out = str(tmp_path / 'old')
    assert train_py(*QUICK, '--data-dir', cifar_root, '--out', out).returncode == 0
    os.remove(os.path.join(out, 'summary.json'))
    state = torch.load(os.path.join(out, 'checkpoint.pt'), weights_only=True)
    del state['scaler'], state['val_pred']
    torch.save(state, os.path.join(out, 'checkpoint.pt'))
    before = snapshot(out)
    err = one_line_error(capsys, ['--resume', '--out', out, '--data-dir', cifar_root], status=1)
    assert 'has no scaler, val_pred: it is from an older train.py' in err and snapshot(out) == before


@pytest.mark.slow
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


# What `--precision auto` must pick on the GPUs students have (README, Precision).
CARDS = [('Tesla T4', (7, 5), 'fp16'), ('Tesla V100-SXM2-16GB', (7, 0), 'fp16'), ('Tesla P100-PCIE-16GB', (6, 0), 'fp32'),
         ('NVIDIA A100-SXM4-40GB', (8, 0), 'bf16'), ('NVIDIA H100 80GB HBM3', (9, 0), 'bf16'), ('NVIDIA H200', (9, 0), 'bf16')]


def simulate_gpus(monkeypatch, name, capability, count=1, hip=None):
    """Make torch answer as a machine with `count` of this card would: its query functions only."""
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: count)
    monkeypatch.setattr(torch.cuda, 'get_device_capability', lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, 'get_device_name', lambda device=None: name)
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda including_emulation=True: True)  # as torch says of all
    monkeypatch.setattr(torch.version, 'hip', hip)


@pytest.mark.parametrize('name, capability, expected', CARDS)
def test_auto_precision_goes_by_the_card_s_tensor_cores(monkeypatch, name, capability, expected):
    simulate_gpus(monkeypatch, name, capability)
    device = hardware.pick_device('auto')
    assert device.type == 'cuda' and hardware.pick_precision('auto', device) == expected
    described = hardware.describe(device)
    assert (described['device_name'], described['compute_capability']) == (name, '{}.{}'.format(*capability))


def test_auto_precision_on_rocm_is_bf16(monkeypatch):
    simulate_gpus(monkeypatch, 'AMD Instinct MI250X', (9, 0), hip='6.2')
    assert hardware.pick_precision('auto', torch.device('cuda')) == 'bf16'


def test_bf16_on_a_card_without_bf16_tensor_cores_is_one_line(capsys, monkeypatch, tmp_path):
    simulate_gpus(monkeypatch, 'Tesla T4', (7, 5))
    err = one_line_error(capsys, ['--precision', 'bf16', '--out', str(tmp_path / 'never')])
    assert 'Tesla T4 (compute capability 7.5) has no bf16 tensor cores' in err and not (tmp_path / 'never').exists()


def test_a_gpu_the_machine_lacks_is_one_line(capsys, monkeypatch, tmp_path):
    simulate_gpus(monkeypatch, 'Tesla T4', (7, 5), count=1)
    err = one_line_error(capsys, ['--device', 'cuda:3', '--out', str(tmp_path / 'never')])
    assert '--device cuda:3: this machine has 1 CUDA GPU, cuda:0 to cuda:0' in err and not (tmp_path / 'never').exists()


def skip_without_bf16_tensor_cores(device, precision):
    """bf16 on a GPU that hardware.pick_precision would refuse it on (a T4, a V100): nothing to test."""
    if device == 'cuda' and precision == 'bf16' and torch.cuda.get_device_capability() < (8, 0):
        pytest.skip('this GPU has no bf16 tensor cores')


def built_tiny(monkeypatch, device, precision, lr=0.05):
    """train.build's model, optimizer and scaler, with TinyNet in place of ResNet-18."""
    monkeypatch.setattr(train, 'ResNet18', TinyNet)
    return train.build(0, lr, 0.9, 5e-4, precision, torch.device(device))


@pytest.mark.parametrize('device', DEVICES)
def test_fp16_steps_skip_overflows_as_gradscaler_s_reference_path_does(monkeypatch, device):
    """train.build's fused SGD takes the scaler's overflow flag as a tensor and skips on the device.
    torch's reference path, the default SGD with GradScaler reading the flag on the host, must reach
    the same weights through batches whose fp16 activations overflow: the first, and a later one."""
    model, _, optimizer, scaler = built_tiny(monkeypatch, device, 'fp16')
    reference = TinyNet().to(device, memory_format=hardware.MEMORY_FORMAT)
    reference.load_state_dict(model.state_dict())
    plain_sgd = torch.optim.SGD(reference.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    plain_scaler = torch.amp.GradScaler(device)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(16, 3, 32, 32, generator=g) * (1e6 if step in (0, 3) else 1),
                torch.randint(0, 10, (16,), generator=g)) for step in range(6)]  # 1e6: past fp16's 65504
    batches = [(x.to(device), y.to(device)) for x, y in batches]
    autocast = functools.partial(hardware.autocast_for, torch.device(device), 'fp16')
    train.train_one_epoch(model, optimizer, scaler, batches, autocast)
    train.train_one_epoch(reference, plain_sgd, plain_scaler, batches, autocast)
    assert scaler.get_scale() == plain_scaler.get_scale() == 2.0 ** 14  # halved once per overflow
    for ours, theirs in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('precision', ['bf16', 'fp16'])
def test_half_precision_learns_what_fp32_learns(monkeypatch, cifar_root, device, precision):
    """Three epochs of the real loop from the same weights, in fp32 and in half precision, with the
    small network (whose steady learning makes the comparison sharp; ResNet-18 learns in the
    precision auto picks in test_a_run_learns). The first epoch's loss agrees to 2%, and after
    three both have learned as much, to 10%."""
    skip_without_bf16_tensor_cores(device, precision)
    results = {}
    for p in ('fp32', precision):
        dev = torch.device(device)
        split, _, _, mean, std = data.load_splits(cifar_root, 0, dev)
        model, _, optimizer, scaler = built_tiny(monkeypatch, device, p, lr=0.02)
        order_gen, augment_gen = torch.Generator().manual_seed(0), torch.Generator(device=dev).manual_seed(1)
        autocast = functools.partial(hardware.autocast_for, dev, p)
        results[p] = []
        for _ in range(3):
            batches = train.training_batches(split.x, split.y, mean, std, 25, order_gen, augment_gen)
            results[p].append(train.train_one_epoch(model, optimizer, scaler, batches, autocast))
    (first, _), (last, last_acc) = results[precision][0], results[precision][-1]
    assert first == pytest.approx(results['fp32'][0][0], rel=0.02)
    assert last == pytest.approx(results['fp32'][-1][0], rel=0.1) and last_acc == pytest.approx(results['fp32'][-1][1], abs=0.05)
    assert last_acc > 0.5  # and both did learn: chance is 0.1


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
    autocast = functools.partial(hardware.autocast_for, device, precision)

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
