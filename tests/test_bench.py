"""bench.py runs end to end and prints its table (a smoke test: speed is measured, not asserted)."""
import os
import subprocess
import sys

import pytest
import torch

import hardware
from conftest import DEVICES, ROOT


@pytest.mark.slow
@pytest.mark.parametrize('device', DEVICES)
def test_bench_prints_a_row_per_pipeline_and_what_compiling_costs(device):
    # Batches of 50, as in test_train.py's compiled runs: whichever runs second finds the kernels compiled.
    result = subprocess.run([sys.executable, os.path.join(ROOT, 'bench.py'), '--device', device, '--batch-size', '50',
                             '--steps', '1', '--windows', '1', '--eval-images', '50', '--compile'],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    rows = [line.split('|') for line in result.stdout.splitlines() if line.startswith(('| ours', '| plain'))]
    assert [row[1].split()[0] for row in rows] == ['ours', 'ours', 'plain'] and rows[-1][5].strip() == '1.0x'
    assert 'torch.compile spent' in result.stdout
    if device == 'cuda':  # the card and the precision auto picks for it, as train.py would
        capability = '{}.{}'.format(*torch.cuda.get_device_capability())
        assert f'(compute capability {capability})' in result.stdout.splitlines()[0]
        assert f'ours ({hardware.pick_precision("auto", torch.device("cuda"))},' in result.stdout
