"""hardware.py promises the precision each GPU computes fastest, picked by its compute capability;
one-line refusals of a device or a precision the machine lacks; and what config.json records. No
GPU is needed: torch's query functions answer as each card would."""
import os
import socket
import subprocess
import sys

import pytest
import torch

from bookkeeping import hardware
import train
from conftest import A_RUN, CUDA, ROOT, TinyNet, one_line_error, snapshot

# What `--precision auto` must pick on the GPUs students have (docs/hardware.md, Precision).
CARDS = [('Tesla T4', (7, 5), 'fp16'), ('Tesla V100-SXM2-16GB', (7, 0), 'fp16'), ('Tesla P100-PCIE-16GB', (6, 0), 'fp32'),
         ('NVIDIA A100-SXM4-40GB', (8, 0), 'bf16'), ('NVIDIA H100 80GB HBM3', (9, 0), 'bf16'), ('NVIDIA H200', (9, 0), 'bf16')]


# What torch.cuda.get_arch_list() says of pytorch.org's builds: for CUDA 12.6, and for CUDA 13.0
# (torch 2.14.1+cu130, on this machine).
FOR_CUDA_12_6 = ['sm_50', 'sm_60', 'sm_70', 'sm_75', 'sm_80', 'sm_86', 'sm_90']
FOR_CUDA_13_0 = ['sm_75', 'sm_80', 'sm_86', 'sm_90', 'sm_100', 'sm_120']


def simulate_gpus(monkeypatch, name, capability, count=1, hip=None, arch_list=FOR_CUDA_12_6):
    """Make torch answer as a machine with `count` of this card would: its query functions only."""
    monkeypatch.setattr(torch.cuda, 'get_arch_list', lambda: arch_list)
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


def test_auto_precision_on_a_cpu_is_bf16_only_with_bf16_instructions(monkeypatch):
    for has_them, expected in ((True, 'bf16'), (False, 'fp32')):
        monkeypatch.setattr(hardware, 'cpu_computes_bf16', lambda: has_them)
        assert hardware.pick_precision('auto', torch.device('cpu')) == expected
    assert hardware.pick_precision('fp16', torch.device('cpu')) == 'fp16'  # a precision named is kept


def test_autocast_computes_in_the_precision_named():
    x, w = torch.randn(4, 8), torch.randn(8, 3)
    for precision, dtype in (('fp32', torch.float32), ('bf16', torch.bfloat16)):
        with hardware.autocast_for(torch.device('cpu'), precision):
            assert (x @ w).dtype == dtype, precision


def test_bf16_on_a_card_without_bf16_tensor_cores_is_one_line(capsys, monkeypatch, tmp_path):
    simulate_gpus(monkeypatch, 'Tesla T4', (7, 5))
    err = one_line_error(capsys, ['--precision', 'bf16', '--out', str(tmp_path / 'never')])
    assert 'Tesla T4 (compute capability 7.5) has no bf16 tensor cores' in err and not (tmp_path / 'never').exists()


def test_a_gpu_the_machine_lacks_is_one_line(capsys, monkeypatch, tmp_path):
    simulate_gpus(monkeypatch, 'Tesla T4', (7, 5), count=1)
    err = one_line_error(capsys, ['--device', 'cuda:3', '--out', str(tmp_path / 'never')])
    assert '--device cuda:3: this machine has 1 CUDA GPU, cuda:0 to cuda:0' in err and not (tmp_path / 'never').exists()


def test_config_records_the_gpus_a_run_may_see_and_the_machine(monkeypatch):
    """Provenance on a cluster or a shared machine: which node, and which of its GPUs."""
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '2')
    described = hardware.describe(torch.device('cpu'))
    assert described['cuda_visible_devices'] == '2' and described['host'] == socket.gethostname()


@pytest.mark.exercise(*A_RUN)
def test_a_bf16_run_resumed_on_a_card_without_bf16_says_which_gpu_it_needs(capsys, monkeypatch, cifar_root, tmp_path):
    """A bf16 run requeued by Slurm onto a T4: its precision is the run's own, so the answer is not
    another precision but another GPU. One line names the card, the run's precision and what to do;
    exit status 1, as for any run that cannot go on, and nothing is touched."""
    monkeypatch.setattr(train, 'ResNet18', TinyNet)
    out = tmp_path / 'run'
    train.main(['--epochs', '1', '--train-subset', '20', '--eval-subset', '10', '--precision', 'bf16', '--device', 'cpu',
                '--data-dir', cifar_root, '--out', str(out)])
    os.remove(out / 'summary.json')  # stopped after its last epoch, before its test
    before = snapshot(out)
    simulate_gpus(monkeypatch, 'Tesla T4', (7, 5))
    err = one_line_error(capsys, ['--resume', '--out', str(out), '--data-dir', cifar_root], status=1)
    assert f'{out} computes in bf16, and the Tesla T4 (compute capability 7.5) has no bf16 tensor cores' in err
    assert 'compute capability 8.0 or more' in err and 'Slurm' in err and snapshot(out) == before


# ---------------------------------------------------------------------------------------------
# A machine with an NVIDIA GPU that torch cannot use: one line, not weeks on the CPU.

T4 = ['Tesla T4']


@pytest.mark.parametrize('gpus, torch_cuda, driver, env, expected', [
    ([], '12.8', None, {}, ''),  # no NVIDIA hardware: auto is the CPU, as it always was
    (T4, None, '12.4', {}, 'this machine has Tesla T4, but this torch ({}) is a CPU-only build'),
    (T4, '12.8', '12.8', {'SLURM_JOB_ID': '7'}, 'this Slurm job was given no GPU: submit it with --gres=gpu:1'),
    (T4, '12.8', '12.8', {'CUDA_VISIBLE_DEVICES': ''}, "CUDA_VISIBLE_DEVICES='' hides every GPU from this process"),
    (T4 * 2, '13.0', '12.4', {}, 'this machine has Tesla T4 and 1 more, but this torch is built for CUDA 13.0, and its '
                                 'driver runs CUDA 12.4 at most: update the driver, or install a torch built for CUDA 12.4'),
    (T4, '12.8', '12.8', {}, 'but torch (built for CUDA 12.8) cannot use it: torch.cuda.is_available() is False'),
])
def test_why_torch_sees_no_gpu_on_a_machine_that_has_one(gpus, torch_cuda, driver, env, expected):
    why = hardware.why_no_gpu(gpus, torch_cuda, driver, env)
    assert (why == '') if not expected else expected.format(torch.__version__) in why, why


def test_a_slurm_job_given_a_gpu_is_not_told_it_has_none():
    assert 'Slurm' not in hardware.why_no_gpu(T4, '12.8', '12.8', {'SLURM_JOB_ID': '7', 'SLURM_JOB_GPUS': '0',
                                                                   'CUDA_VISIBLE_DEVICES': '0'})


@pytest.fixture
def fake_nvidia_smi(tmp_path, monkeypatch):
    """An nvidia-smi first on the PATH that answers as a T4 machine whose driver runs CUDA 12.4 at most."""
    folder = tmp_path / 'bin'
    folder.mkdir()
    (folder / 'nvidia-smi').write_text('#!/bin/sh\nif [ "$1" = -L ]; then echo "GPU 0: Tesla T4 (UUID: GPU-1234)"; '
                                       'else echo "| NVIDIA-SMI 550.54  Driver Version: 550.54  CUDA Version: 12.4 |"; fi\n')
    (folder / 'nvidia-smi').chmod(0o755)
    monkeypatch.setenv('PATH', f'{folder}:{os.environ["PATH"]}')
    return folder


def test_with_the_gpu_unusable_auto_stops_before_anything_is_written_and_cpu_still_runs(fake_nvidia_smi, capsys,
                                                                                         cifar_root, tmp_path,
                                                                                         monkeypatch):
    """nvidia-smi lists a T4, torch sees none (here, where there is no GPU): train.py --device auto
    stops with one line saying why, exit status 2, and writes nothing; --device cpu is the CPU."""
    assert hardware.nvidia_gpus() == T4 and hardware.driver_cuda() == '12.4'
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '')
    out = tmp_path / 'never'
    err = one_line_error(capsys, ['--data-dir', cifar_root, '--out', str(out), '--epochs', '1'])
    assert err.startswith('train.py: error: --device auto: this machine has Tesla T4, but ') and \
        '--device cpu trains on the CPU instead' in err and not out.exists()
    assert hardware.pick_device('cpu') == torch.device('cpu')


def test_gpu_locks_are_per_machine_as_well_as_per_number(tmp_path, monkeypatch):
    """Two machines sharing a home folder each have their GPU 0: a run on host b takes it while a
    run on host a holds its own; another run on host a would have to wait."""
    monkeypatch.setattr(hardware, 'GPU_LOCKS', str(tmp_path))
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '')
    held = hardware.locks.acquire(hardware.gpu_lock('0', 'node-a'))
    assert held is not None and hardware.locks.acquire(hardware.gpu_lock('0', 'node-a')) is None
    other = hardware.locks.acquire(hardware.gpu_lock('0', 'node-b'))  # free at once, not after a wait
    assert other is not None
    hardware.locks.release(other)
    assert hardware.take_gpu(['0'], host='node-b') == '0' and os.environ['CUDA_VISIBLE_DEVICES'] == '0'
    assert sorted(os.listdir(tmp_path)) == ['gpu0@node-a.lock', 'gpu0@node-b.lock']
    hardware.locks.release(held)


def test_the_notebook_s_look_at_the_machine_says_where_and_in_what_auto_trains(fake_nvidia_smi):
    """python -m bookkeeping.hardware, the notebook's first look at a runtime. Without NVIDIA
    hardware: the CPU, in the precision pick_precision gives it; with --gpu, as on Colab or Kaggle,
    a line that says how to get one, and exit status 1. With a T4 that torch cannot use
    (CUDA_VISIBLE_DEVICES empty): pick_device's one line, and exit status 1."""
    look = [sys.executable, '-m', 'bookkeeping.hardware']
    no_nvidia = os.environ | {'PATH': os.environ['PATH'].replace(f'{fake_nvidia_smi}:', '')}
    no_nvidia.pop('CUDA_VISIBLE_DEVICES', None)
    here = subprocess.run(look, cwd=ROOT, env=no_nvidia, capture_output=True, text=True)
    precision = hardware.pick_precision('auto', torch.device('cpu'))
    assert (here.returncode, here.stdout) == (0, f'torch {torch.__version__} sees no GPU here: --device auto trains on '
                                                 f'the CPU ({os.cpu_count()} cores), in {precision}\n')
    hosted = subprocess.run([*look, '--gpu'], cwd=ROOT, env=no_nvidia, capture_output=True, text=True)
    assert (hosted.returncode, hosted.stdout) == (1, '') and hosted.stderr.startswith(
        f'torch {torch.__version__} sees no GPU here: on Colab, choose Runtime › Change runtime type › T4 GPU;')
    hidden = subprocess.run(look, cwd=ROOT, env=os.environ | {'CUDA_VISIBLE_DEVICES': ''}, capture_output=True, text=True)
    assert (hidden.returncode, hidden.stdout) == (1, '') and hidden.stderr == \
        '--device auto: this machine has Tesla T4, but CUDA_VISIBLE_DEVICES=\'\' hides every GPU from this process; ' \
        '--device cpu trains on the CPU instead\n'


@CUDA
def test_on_a_gpu_the_look_at_the_machine_names_the_card_and_auto_trains_on_it():
    """On a GPU machine, the real path: this torch has code for the card (with_code_for lets it be),
    auto is the GPU, and the notebook's look names it and the precision auto computes in there."""
    device = hardware.pick_device('auto')
    assert device == torch.device('cuda') and hardware.has_code_for(torch.cuda.get_device_capability(),
                                                                    torch.cuda.get_arch_list())
    look = subprocess.run([sys.executable, '-m', 'bookkeeping.hardware', '--gpu'], cwd=ROOT, capture_output=True,
                          text=True)
    count, (major, minor) = torch.cuda.device_count(), torch.cuda.get_device_capability()
    assert (look.returncode, look.stdout) == (0, f'torch {torch.__version__} sees {count} GPU{"s" * (count > 1)} here: '
                                                 f'--device auto trains on {torch.cuda.get_device_name()} (compute '
                                                 f'capability {major}.{minor}), in '
                                                 f'{hardware.pick_precision("auto", device)}\n'), look.stderr


@pytest.mark.parametrize('capability, arch_list, has', [
    ((6, 0), FOR_CUDA_12_6, True), ((6, 0), FOR_CUDA_13_0, False),   # the P100
    ((7, 0), FOR_CUDA_13_0, False), ((7, 5), FOR_CUDA_13_0, True),   # the V100, the T4
    ((8, 9), FOR_CUDA_13_0, True),    # the L4: sm_86's code runs on 8.6 and up within major 8
    ((10, 3), FOR_CUDA_12_6, False),  # no sm_10x, and no PTX to compile for it
    ((10, 3), ['sm_80', 'sm_90', 'compute_90'], True),  # compute_90, PTX: the driver compiles it for 9.0 and up
    ((8, 0), ['sm_90a', 'compute_90a'], False), ((9, 0), ['sm_90a'], True), ((9, 0), ['compute_90a'], True),
    ((10, 3), ['sm_100a'], False), ((10, 3), ['sm_100'], True),  # sm_100a: 10.0's own features, 10.0 alone
])
def test_a_build_has_code_for_a_card_of_its_major_from_its_minor_up_or_from_its_ptx(capability, arch_list, has):
    assert hardware.has_code_for(capability, arch_list) is has


def test_a_gpu_this_torch_has_no_code_for_is_one_line_not_a_crash_at_the_first_convolution(capsys, monkeypatch,
                                                                                          cifar_root, tmp_path):
    """Kaggle's P100 under a torch built for CUDA 13.0: train.py stops before it writes anything,
    saying which card, what the build has code for, and what to do; for a card newer than the
    build, a newer CUDA's. The same build on a T4 runs; a build whose arch list is empty is let be."""
    simulate_gpus(monkeypatch, 'Tesla P100-PCIE-16GB', (6, 0), arch_list=FOR_CUDA_13_0)
    out = tmp_path / 'never'
    err = one_line_error(capsys, ['--data-dir', cifar_root, '--out', str(out), '--epochs', '1'])
    assert err == (f'train.py: error: --device auto: this torch ({torch.__version__}) has no code for the Tesla '
                   f'P100-PCIE-16GB (compute capability 6.0), only for sm_75, sm_80, sm_86, sm_90, sm_100, sm_120: '
                   f'install a torch built with code for compute capability 6.0 (one for an older CUDA; '
                   f'pytorch.org), or use --device cpu (see --help)') and not out.exists()
    with pytest.raises(ValueError, match='--device cuda:0: this torch .* has no code for the Tesla P100'):
        hardware.pick_device('cuda:0')
    simulate_gpus(monkeypatch, 'NVIDIA GeForce RTX 5090', (12, 0), arch_list=FOR_CUDA_12_6)  # a card newer than the build
    with pytest.raises(ValueError, match=r'compute capability 12.0 \(one for a newer CUDA; pytorch.org\)'):
        hardware.pick_device('auto')
    simulate_gpus(monkeypatch, 'Tesla T4', (7, 5), arch_list=FOR_CUDA_13_0)
    assert hardware.pick_device('auto') == torch.device('cuda')
    simulate_gpus(monkeypatch, 'Tesla P100-PCIE-16GB', (6, 0), arch_list=[])  # a build that does not say: let it try
    assert hardware.pick_device('auto') == torch.device('cuda')
