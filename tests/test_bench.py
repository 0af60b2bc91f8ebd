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
    rows = [[cell.strip() for cell in line.split('|')[1:-1]] for line in result.stdout.splitlines()
            if line.startswith(('| ours', '| plain'))]
    assert [row[0].split()[0] for row in rows] == ['ours', 'ours', 'plain']
    # each row's columns follow from its two rates (printed rounded to whole images: 3% slack), a 40k
    # epoch being 40,000 training and 10,000 evaluated images
    number = lambda text: float(text.replace(',', '').rstrip('xh '))
    epochs = [40000 / number(row[1]) + 10000 / number(row[2]) for row in rows]
    for row, epoch in zip(rows, epochs):
        assert number(row[3]) == pytest.approx(epoch, rel=0.03), row
        assert number(row[4]) == pytest.approx(epochs[-1] / epoch, rel=0.03, abs=0.05), row
        assert number(row[5]) == pytest.approx(3345 * epoch / 3600, rel=0.03, abs=0.05), row
    assert 'torch.compile spent' in result.stdout
    if device == 'cuda':  # the card and the precision auto picks for it, as train.py would
        capability = '{}.{}'.format(*torch.cuda.get_device_capability())
        assert f'(compute capability {capability})' in result.stdout.splitlines()[0]
        assert f'ours ({hardware.pick_precision("auto", torch.device("cuda"))},' in result.stdout
