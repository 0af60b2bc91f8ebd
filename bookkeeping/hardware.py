"""The hardware a run computes on: the device, the precision, and what config.json records of them.

Precision. Autocast runs the convolutions and matrix products in 16 bits, where the hardware
has units for them (tensor cores on a GPU, AMX or AVX512-BF16 on a CPU); the weights and SGD's
momentum stay fp32, so the small updates of a late epoch are not lost to a 16-bit mantissa.
The two 16-bit formats split their bits differently:

    bf16   8 exponent bits, fp32's range (1e-38 to 3e38), a coarse mantissa
    fp16   5 exponent bits: nothing above 65,504, and below 6e-5 it loses precision until,
           at 6e-8, it reaches zero

Many gradients are smaller than fp16 can hold, so fp16 needs a loss scaler and bf16 does not.
torch.amp.GradScaler multiplies the loss, and so every gradient, by a large power of two
(65,536 to start) before backward, which lifts them into fp16's range, and divides them again
inside the optimizer's step. A step whose gradients overflowed (inf or nan) is skipped and the
scale halved; after 2,000 clean steps the scale doubles. In fp32 and bf16 the scaler is off.

Which precision `auto` picks goes by what the hardware computes natively (pick_precision); a
precision it would only emulate is slower than fp32. On 2 cores of an Intel Xeon with AMX, torch
2.14.1, one epoch of `train.py --epochs 1 --train-subset 2048 --eval-subset 1000` trained in
11.4 s in bf16 and 33.2 s in fp32 (docs/hardware.md has the command and more).
"""
import argparse
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import time

import torch

from bookkeeping import locks
from bookkeeping.environment import as_numbers

# The GPU pool's locks, gpuN@HOST.lock: in the project's folder (.gpus), unless GPU_LOCKS names another
# (one that several clones of the project share, so that their runs share the machine's GPUs).
GPU_LOCKS = os.environ.get('GPU_LOCKS') or os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), '.gpus')
NVIDIA_PROC = '/proc/driver/nvidia/gpus'  # a folder per GPU, where the NVIDIA driver is loaded
HALF = {'bf16': torch.bfloat16, 'fp16': torch.float16}  # autocast's dtype for each half precision
# Channels-last (NHWC) memory is the layout cuDNN's tensor-core convolutions and oneDNN's CPU ones
# compute in: with NCHW tensors they would convert at every layer. Expected to be faster, as
# PyTorch's performance guide says; not measured against NCHW in this project. It changes no result.
MEMORY_FORMAT = torch.channels_last


def pick_device(name):
    """The torch.device that --device names: auto is the GPU when torch sees one, and the CPU on a
    machine without an NVIDIA GPU. A machine with an NVIDIA GPU that torch does not see is an
    error, not a run on the CPU that would take weeks: why_no_gpu says why, and --device cpu runs
    there anyway. So is a GPU that torch sees but this build has no code for (has_code_for), which
    would fail at its first convolution."""
    if name == 'auto':
        if torch.cuda.is_available():
            return with_code_for(torch.device('cuda'), name)
        why = why_no_gpu(nvidia_gpus(), torch.version.cuda, driver_cuda(), os.environ)
        if why:
            raise ValueError(f'--device auto: {why}; --device cpu trains on the CPU instead')
        return torch.device('cpu')
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ('cpu', 'cuda'):
        raise ValueError(f'--device must be auto, cpu, cuda or cuda:N, got {name}')
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise ValueError(f'--device {name}: this machine has no CUDA GPU that torch can use')
    count = torch.cuda.device_count() if device.type == 'cuda' else 0
    if device.type == 'cuda' and device.index is not None and device.index >= count:
        raise ValueError(f'--device {name}: this machine has {count} CUDA GPU{"s" * (count > 1)}, '
                         f'cuda:0 to cuda:{count - 1}')
    return with_code_for(device, name) if device.type == 'cuda' else device


def cuda_target(arch):
    """An entry of torch.cuda.get_arch_list() as (kind, (major, minor), suffix): 'sm_86' is
    ('sm', (8, 6), ''), 'compute_90a' ('compute', (9, 0), 'a'); None for what is not one."""
    found = re.fullmatch(r'(sm|compute)_(\d+)(\d)([a-z]?)', arch)
    return found and (found.group(1), (int(found.group(2)), int(found.group(3))), found.group(4))


def has_code_for(capability, arch_list):
    """Whether a torch build whose torch.cuda.get_arch_list() is `arch_list` has code for a card of
    this compute capability, (major, minor). Code compiled for sm_XY runs on the cards of major X
    from minor Y up; PTX, compute_XY, is compiled by the driver for any card from X.Y up; either
    with an `a` (sm_90a: features of 9.0 alone) runs on X.Y only. Builds for CUDA 12.8 and later
    leave out the cards below 7.5: the P100 (6.0), the V100 (7.0)."""
    for kind, built, suffix in filter(None, map(cuda_target, arch_list)):
        if suffix == 'a':
            runs = built == capability
        elif kind == 'sm':
            runs = built[0] == capability[0] and built[1] <= capability[1]
        else:
            runs = built <= capability
        if runs:
            return True
    return False


def with_code_for(device, name):
    """The CUDA device, if this torch build has code for it (or does not say: an empty arch list);
    else ValueError, saying which card, what the build has code for, and which build to install:
    for a card older than the build's, one for an older CUDA; for a newer card, a newer CUDA.
    (ROCm builds name AMD's targets, gfx90a and the like: not checked here.)"""
    capability = torch.cuda.get_device_capability(device)
    arch_list = torch.cuda.get_arch_list()
    if torch.version.hip or not arch_list or has_code_for(capability, arch_list):
        return device
    card = f'{torch.cuda.get_device_name(device)} (compute capability {capability[0]}.{capability[1]})'
    newer = all(target[1] < capability for target in filter(None, map(cuda_target, arch_list)))
    raise ValueError(f'--device {name}: this torch ({torch.__version__}) has no code for the {card}, only for '
                     f'{", ".join(arch_list)}: install a torch built with code for compute capability '
                     f'{capability[0]}.{capability[1]} (one for a{" newer" if newer else "n older"} CUDA; pytorch.org), '
                     f'or use --device cpu')


def nvidia_gpus():
    """The NVIDIA GPUs this machine's driver knows, by name; [] if it has none. Asked of
    `nvidia-smi -L` where it is on the PATH; else the driver's /proc/driver/nvidia/gpus."""
    if shutil.which('nvidia-smi'):
        try:
            listed = subprocess.run(['nvidia-smi', '-L'], capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.TimeoutExpired):
            listed = ''
        gpus = re.findall(r'^GPU \d+: (.+?)(?: \(UUID|$)', listed, re.M)
        if gpus:
            return gpus
    try:
        return [f'GPU {name}' for name in sorted(os.listdir(NVIDIA_PROC))]
    except OSError:
        return []


def driver_cuda():
    """The newest CUDA this machine's driver runs, as nvidia-smi's header says it ('12.4'); None if unknown."""
    if not shutil.which('nvidia-smi'):
        return None
    try:
        header = subprocess.run(['nvidia-smi'], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r'CUDA Version: ([\d.]+)', header)
    return found and found.group(1)


def why_no_gpu(gpus, torch_cuda, driver, env):
    """Why torch sees no GPU on a machine whose driver lists `gpus`, in a few words; '' if the
    machine has none. torch_cuda is the CUDA torch was built for (torch.version.cuda, None for a
    CPU-only build), driver the newest CUDA the driver runs, env the process's environment."""
    if not gpus:
        return ''
    card = f'this machine has {gpus[0]}{f" and {len(gpus) - 1} more" if len(gpus) > 1 else ""}'
    if torch_cuda is None:
        return (f'{card}, but this torch ({torch.__version__}) is a CPU-only build: install a CUDA build '
                f'(pytorch.org), or run with the Python that has one (make PY=...)')
    visible = env.get('CUDA_VISIBLE_DEVICES')
    if 'SLURM_JOB_ID' in env and not any(env.get(k) for k in ('SLURM_JOB_GPUS', 'SLURM_STEP_GPUS', 'SLURM_GPUS_ON_NODE')) \
            and not visible:
        return f'{card}, but this Slurm job was given no GPU: submit it with --gres=gpu:1 (or --gpus=1)'
    if visible is not None and visible.strip() in ('', '-1', 'none', 'NoDevFiles'):
        return f'{card}, but CUDA_VISIBLE_DEVICES={visible!r} hides every GPU from this process'
    if driver and as_numbers(driver) < as_numbers(torch_cuda):
        return (f'{card}, but this torch is built for CUDA {torch_cuda}, and its driver runs CUDA {driver} at most: '
                f'update the driver, or install a torch built for CUDA {driver} or older')
    return f'{card}, but torch (built for CUDA {torch_cuda}) cannot use it: torch.cuda.is_available() is False'


def take_gpu(pool, wait=2.0, host=None):
    """One GPU of `pool` (['0', '1', ...]) that no other run of this project holds, held until this
    process ends, and the only one it may see (CUDA_VISIBLE_DEVICES). While every GPU of the pool
    is held, it waits for one to come free, and says so once. Returns the GPU taken.

    Taken as the run starts, rather than planned before any run starts: runs end in an order no
    plan knows, and a run given a busy GPU by a plan would share it, and its time, while another
    idles. Call it before anything asks torch about CUDA, which reads CUDA_VISIBLE_DEVICES once."""
    os.makedirs(GPU_LOCKS, exist_ok=True)
    said = False
    while True:
        for gpu in pool:
            if locks.acquire(gpu_lock(gpu, host)) is not None:  # kept: the process holds it
                os.environ['CUDA_VISIBLE_DEVICES'] = gpu
                return gpu
        if not said:
            print(f'waiting for a free GPU: {" ".join(pool)} are all held by other runs of this project', flush=True)
            said = True
        time.sleep(wait)


def gpu_lock(gpu, host=None):
    """GPU `gpu`'s lock file, named for this machine as well as the number: two machines that share a
    home folder (and so .gpus/, or GPU_LOCKS) each have their own GPU 0."""
    return os.path.join(GPU_LOCKS, f'gpu{gpu}@{host or socket.gethostname()}.lock')


def cpu_computes_bf16():
    """True where the CPU has bf16 matrix instructions (AMX or AVX512-BF16); elsewhere bf16 is
    emulated, and slower than fp32."""
    try:
        with open('/proc/cpuinfo') as f:
            flags = f.read()
    except OSError:  # not Linux: assume no
        return False
    return 'amx_bf16' in flags or 'avx512_bf16' in flags


class NotNative(Exception):
    """bf16 on an NVIDIA card below compute capability 8.0, which it would only emulate, slower
    than fp32: refused. (A CPU without bf16 instructions is allowed it, for tests; auto picks fp32.)"""


def pick_precision(precision, device, run=None):
    """The precision a run computes in: the one --precision names, or for auto the fastest that
    the hardware computes natively. A CUDA card's compute capability says which tensor cores it has:
        8.0 and up   A100, RTX 30xx/40xx, L4, H100: bf16 tensor cores; bf16
        7.x          V100, T4, RTX 20xx: fp16 tensor cores only; fp16 with a GradScaler
        below 7.0    P100, GTX 10xx: no tensor cores; fp32
    AMD GPUs (ROCm, which torch also calls cuda) get bf16; a CPU gets bf16 where it has bf16
    matrix instructions, else fp32. torch.cuda.is_bf16_supported() is no guide: by default it
    also says yes where bf16 is only emulated, as on a T4. NotNative for bf16 on a card below 8.0,
    said of the `run` folder when a run resumes there in its own precision (a requeue on an older GPU)."""
    on_nvidia = device.type == 'cuda' and not torch.version.hip
    capability = torch.cuda.get_device_capability(device) if on_nvidia else None
    if precision == 'auto':
        if capability:
            return 'bf16' if capability >= (8, 0) else 'fp16' if capability >= (7, 0) else 'fp32'
        return 'bf16' if device.type == 'cuda' or cpu_computes_bf16() else 'fp32'
    if precision == 'bf16' and capability and capability < (8, 0):
        card = f'the {torch.cuda.get_device_name(device)} (compute capability {capability[0]}.{capability[1]})'
        if run:
            raise NotNative(f'{run} computes in bf16, and {card} has no bf16 tensor cores: resume it on a GPU of compute '
                            f'capability 8.0 or more; on Slurm, ask for one by type (docs/cluster.md)')
        raise NotNative(f'--precision bf16: {card} has no bf16 tensor cores; use fp16 or auto')
    return precision


def sgd(parameters, lr, momentum, weight_decay):
    """torch.optim.SGD, fused: one kernel updates every weight, and takes fp16's scale and overflow
    flag as tensors, so that skipping an overflowed step needs no wait for the GPU (plain SGD with a
    GradScaler reads the flag on the host, a wait at every step). Its velocity v starts at 0, as
    plain SGD's first step takes it (v = g): in torch 2.14 the fused kernel makes v with
    empty_like, uninitialised memory, on its first step, and when that step overflows and is
    skipped, the garbage stays and is added to every later step. Made here first, at 0, v is
    exactly plain SGD's (tests/test_train.py checks both paths)."""
    optimizer = torch.optim.SGD(parameters, lr=lr, momentum=momentum, weight_decay=weight_decay, fused=True)
    for group in optimizer.param_groups:
        if group['momentum']:
            for p in group['params']:
                optimizer.state[p]['momentum_buffer'] = torch.zeros_like(p)
    return optimizer


def autocast_for(device, precision):
    """bf16 or fp16 autocast for a half precision, else a context that changes nothing."""
    return torch.autocast(device.type, dtype=HALF.get(precision), enabled=precision in HALF)


def set_determinism(deterministic):
    """--deterministic: CUDA kernels that sum in a fixed order, so that a run repeats to the last
    digit. Otherwise cuDNN times its algorithms for these shapes once and keeps the fastest, whose
    order of summation may differ from one run to the next. The CPU is repeatable either way."""
    if deterministic:  # cuBLAS needs this set before its first use to be repeatable
        os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')
        torch.use_deterministic_algorithms(True)
    else:
        torch.backends.cudnn.benchmark = True


def describe(device):
    """What config.json records of the hardware: the device's name, a CUDA card's compute
    capability, the GPUs the run was allowed to see, and the machine (on a cluster, which node)."""
    if device.type == 'cuda':
        major, minor = torch.cuda.get_device_capability(device)
        name, capability = torch.cuda.get_device_name(device), f'{major}.{minor}'
    else:
        name, capability = platform.processor() or platform.machine(), None
    return {'device_name': name, 'compute_capability': capability,
            'cuda_visible_devices': os.environ.get('CUDA_VISIBLE_DEVICES'), 'host': socket.gethostname()}


def pick(device, precision):
    """bench.py's --device and --precision: the device, and the precision auto picks for it, as
    train.py would. ValueError, in one line, where this machine has no such device; NotNative
    where its GPU does not compute that precision natively (bf16 on a T4)."""
    device = pick_device(device)
    return device, pick_precision(precision, device)


def in_words(device):
    """The device in words: a card with its compute capability, or the CPU with the threads torch uses."""
    if device.type == 'cuda':
        seen = describe(device)
        return f'{seen["device_name"]} (compute capability {seen["compute_capability"]})'
    return f'CPU, {torch.get_num_threads()} threads'


def main(argv=None):
    """python -m bookkeeping.hardware [--gpu]: where --device auto trains on this machine, and in
    which precision auto computes there; or, on a machine with a GPU that torch cannot use, why, in
    one line and exit status 1. With --gpu, a machine where torch sees no GPU stops the same way,
    with a line that says how to get one: the notebook's first look at a Colab or Kaggle runtime,
    where the CPU would take days (docs/colab.ipynb)."""
    parser = argparse.ArgumentParser(prog='python -m bookkeeping.hardware',
                                     description='Where --device auto trains here, and in which precision.')
    parser.add_argument('--gpu', action='store_true', help='stop, exit status 1, where torch sees no GPU')
    args = parser.parse_args(argv)
    try:
        device = pick_device('auto')
    except ValueError as e:
        sys.exit(str(e))
    if device.type == 'cuda':
        count = torch.cuda.device_count()
        sees, card = f'{count} GPU{"s" * (count > 1)}', in_words(device)
    elif args.gpu:
        sys.exit(f'torch {torch.__version__} sees no GPU here: on Colab, choose Runtime › Change runtime type › '
                 f'T4 GPU; on Kaggle, Settings › Accelerator › a GPU; then run again')
    else:
        sees, card = 'no GPU', f'the CPU ({os.cpu_count()} cores)'
    print(f'torch {torch.__version__} sees {sees} here: --device auto trains on {card}, in '
          f'{pick_precision("auto", device)}')


if __name__ == '__main__':
    main()
