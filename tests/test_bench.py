"""bench.py runs end to end and prints its table (a smoke test: speed is measured, not asserted)."""
import os
import subprocess
import sys

from conftest import ROOT


def test_bench_prints_a_row_per_pipeline():
    result = subprocess.run([sys.executable, os.path.join(ROOT, 'bench.py'), '--device', 'cpu', '--steps', '1',
                             '--windows', '1', '--eval-images', '100'], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith('| ours') or line.startswith('| plain')]
    assert len(rows) == 2 and rows[1].split('|')[5].strip() == '1.0x'
