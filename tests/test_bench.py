"""bench.py runs end to end and prints its table (a smoke test: speed is measured, not asserted)."""
import os
import subprocess
import sys

import pytest
import torch

from bookkeeping import hardware
from bookkeeping import study
from conftest import DEVICES, ROOT


@pytest.mark.exercise('BasicBlock.forward', 'crop_flip', 'train_one_epoch', 'evaluate')
@pytest.mark.slow
@pytest.mark.parametrize('device', DEVICES)
def test_bench_prints_a_row_per_pipeline_and_what_compiling_costs(device):
    # Batches of 50 in fp32 on the CPU, as in test_train.py's compiled run: whichever runs second finds
    # the kernels compiled (on CUDA, the precision auto picks, which the test checks below).
    result = subprocess.run([sys.executable, os.path.join(ROOT, 'bench.py'), '--device', device, '--batch-size', '50',
                             '--steps', '1', '--windows', '1', '--eval-images', '50', '--compile',
                             *['--precision', 'fp32'] * (device == 'cpu')],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    rows = [[cell.strip() for cell in line.split('|')[1:-1]] for line in result.stdout.splitlines()
            if line.startswith(('| ours', '| plain'))]
    assert [row[0].split()[0] for row in rows] == ['ours', 'ours', 'plain']
    # Each row's columns follow from its two rates, a 40k epoch being 40,000 training and 10,000
    # evaluated images. The rates are printed rounded to whole images a second: r is r +- 0.5.
    number = lambda text: float(text.replace(',', '').rstrip('xh '))
    # The whole study's epochs, from study.toml: every run's --epochs, 300 (train.py's default) where it gives none.
    study_epochs = sum(s.flags.get('epochs', 300) for s in study.load().settings())
    assert f'whole study ({study_epochs:,} epochs)' in result.stdout
    epoch = lambda train_rate, eval_rate: 40000 / train_rate + 10000 / eval_rate
    for row in rows:
        train_rate, eval_rate, seconds, ratio, hours = map(number, row[1:])
        assert epoch(train_rate + 0.5, eval_rate + 0.5) <= seconds <= epoch(train_rate - 0.5, eval_rate - 0.5), row
        assert ratio == pytest.approx(number(rows[-1][3]) / seconds, abs=0.051), row
        assert hours == pytest.approx(study_epochs * seconds / 3600, abs=0.051), row
    assert 'torch.compile spent' in result.stdout
    if device == 'cuda':  # the card and the precision auto picks for it, as train.py would
        capability = '{}.{}'.format(*torch.cuda.get_device_capability())
        assert f'(compute capability {capability})' in result.stdout.splitlines()[0]
        assert f'ours ({hardware.pick_precision("auto", torch.device("cuda"))},' in result.stdout
