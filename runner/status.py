"""A study at a glance: a line per run, its state, its epoch, its accuracy and its time.

    make status                          every run of the study (EXP=wd: one experiment)
    python -m runner.status RUN...       those run folders

A run is running if a process holds its lock; else its files say whether it finished, diverged,
was interrupted or has not started (both, bookkeeping/runs.py's examine). A damaged folder is
a line that says what is wrong and what to do, and exit status 1.
"""
import argparse
import math
import sys

from bookkeeping import runs


def status(folder):
    """What a line of make status says of a run: its folder; its state (running, told by its lock,
    which its process holds until it ends, or finished, diverged, interrupted, not started); epoch k
    of N; the last validation accuracy; its training time, in all once it has ended, so far and, while it
    runs, the time left, until then."""
    held = runs.examine(folder)
    if held.damaged:
        return [folder, f'damaged: {held.damaged.name} {held.damaged.what}', '', '', str(held.damaged).partition('; ')[2]]
    holder = held.holder
    found = f'running ({holder})' if holder else held.state
    config, rows = runs.read_config(folder), runs.read_metrics(folder)
    if config is None:
        return [folder, found, '', '', '']
    epochs = config['flags']['epochs']
    ended = found in ('finished', 'diverged')
    time_taken = f'{clock(sum(row["seconds"] for row in rows))} {"in all" if ended else "so far"}'
    if holder and rows:  # at the pace of its last epochs, this process's
        pace = sum(row['seconds'] for row in rows[-3:]) / len(rows[-3:])
        time_taken += f', {clock(pace * (epochs - len(rows)))} left'
    accuracy = f'val acc {100 * rows[-1]["val_acc"]:.2f}%' if rows else ''
    return [folder, found, f'epoch {len(rows)}/{epochs}', accuracy, time_taken]


def clock(seconds):
    """Seconds as h:mm:ss."""
    seconds = int(seconds) if math.isfinite(seconds) else 0
    return f'{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'


def main(argv=None):
    parser = argparse.ArgumentParser(description='A line per run: its state, epoch, last validation accuracy and time. '
                                                 'Exit status 1 if a run folder is damaged.')
    parser.add_argument('folders', nargs='+', metavar='RUN', help='run folders (make status gives the study\'s)')
    lines = [status(folder) for folder in parser.parse_args(argv).folders]
    widths = [max(len(line[k]) for line in lines) for k in range(5)]
    for line in lines:
        print('  '.join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())
    return 1 if any(line[1].startswith('damaged') for line in lines) else 0


if __name__ == '__main__':
    sys.exit(main())
