"""bench.py runs end to end and prints its table, each row's columns following from its two rates
(speed is measured, not asserted): quickly without compiling, and with torch.compile (slow)."""
import os
import subprocess
import sys

import pytest
import torch

from bookkeeping import hardware
from bookkeeping import study
from conftest import CUDA, ROOT


def bench(*args):
    """bench.py's output with these flags, and its table: a row per pipeline, its cells."""
    result = subprocess.run([sys.executable, os.path.join(ROOT, 'bench.py'), *args], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    return result.stdout, [[cell.strip() for cell in line.split('|')[1:-1]] for line in result.stdout.splitlines()
                           if line.startswith(('| ours', '| plain'))]


def follow_from_their_rates(printed, rows):
    """Each row's columns follow from its two rates, a 40k epoch being 40,000 training and 10,000
    evaluated images. The rates are printed rounded to whole images a second: r is r +- 0.5."""
    number = lambda text: float(text.replace(',', '').rstrip('xh '))
    # The whole study's epochs, from study.toml: every run's --epochs, 300 (train.py's default) where it gives none.
    study_epochs = sum(s.flags.get('epochs', 300) for s in study.load().settings())
    assert f'whole study ({study_epochs:,} epochs)' in printed
    epoch = lambda train_rate, eval_rate: 40000 / train_rate + 10000 / eval_rate
    for row in rows:
        train_rate, eval_rate, seconds, ratio, hours = map(number, row[1:])
        assert train_rate >= 1 and eval_rate >= 1, row  # else its rounding says too little
        assert epoch(train_rate + 0.5, eval_rate + 0.5) <= seconds <= epoch(train_rate - 0.5, eval_rate - 0.5), row
        assert ratio == pytest.approx(number(rows[-1][3]) / seconds, abs=0.051), row
        assert hours == pytest.approx(study_epochs * seconds / 3600, abs=0.051), row


@pytest.mark.exercise('BasicBlock.forward', 'crop_flip', 'train_one_epoch', 'evaluate')
def test_each_row_s_epoch_time_and_cost_follow_from_its_two_rates():
    """On the CPU in fp32, a step of a batch of 4 a window, and 8 images evaluated: seconds, not minutes."""
    printed, rows = bench('--device', 'cpu', '--precision', 'fp32', '--batch-size', '4', '--steps', '1', '--windows', '1',
                          '--eval-images', '8')
    assert [row[0].split()[0] for row in rows] == ['ours', 'plain']
    follow_from_their_rates(printed, rows)


def test_compiling_pays_after_the_epochs_that_win_its_seconds_back():
    """Worked by hand: ours takes 100 s an epoch, compiled 90 s, and compiling took 250 s, so it
    saves 10 s an epoch and has paid for itself after 25 epochs; compiled at 110 s it never does."""
    import bench
    rows = [('ours', 100, 200), ('ours compiled', 100, 200), ('plain', 50, 100)]
    compared = [(label, train, evals, seconds, 0, 0) for (label, train, evals), seconds in zip(rows, (100, 90, 300))]
    assert bench.pays_after(compared, 250) == (10, 25)
    assert bench.pays_after([compared[0], compared[0][:3] + (110, 0, 0)], 250) == (-10, None)
    # A 40k epoch at 400 training and 1,000 evaluated images a second: 100 s + 10 s.
    assert bench.compare([('a', 400, 1000), ('b', 200, 500)])[0][3:5] == (110, 2)


@pytest.mark.exercise('BasicBlock.forward', 'crop_flip', 'train_one_epoch', 'evaluate')
@pytest.mark.slow
@pytest.mark.parametrize('device', [pytest.param('cuda', marks=CUDA)])
def test_bench_prints_a_row_per_pipeline_and_what_compiling_costs(device):
    """With --compile, on a GPU (the CPU's compiling is tested by test_runs.py's compiled run): a row
    for ours compiled, the line on what compiling cost, the card, and the precision auto picks for
    it, as train.py would."""
    printed, rows = bench('--device', device, '--batch-size', '50', '--steps', '1', '--windows', '1', '--eval-images', '50',
                          '--compile')
    assert [row[0].split()[0] for row in rows] == ['ours', 'ours', 'plain']
    follow_from_their_rates(printed, rows)
    assert 'torch.compile spent' in printed
    capability = '{}.{}'.format(*torch.cuda.get_device_capability())
    assert f'(compute capability {capability})' in printed.splitlines()[0]
    assert f'ours ({hardware.pick_precision("auto", torch.device("cuda"))},' in printed
