"""docs/colab.ipynb, run as Colab runs it: cell after cell in a Jupyter kernel (nbclient), here off
Colab, in a folder of the test's own (WHERE) instead of on Google Drive, cloning the project from a
git repository of this working tree. The experiment is schedule (constant against cosine) at the
tests' scale, on the tiny data set. On the way, what a student does: the stop button in the middle
of a run, and the cell run again; then what a disconnect does: the kernel, and every process it
started, killed in the middle of a run, and the notebook run again from the top."""
import json
import re
import os
import signal
import subprocess
import threading
import time

import pytest

nbclient = pytest.importorskip('nbclient', reason='make test installs nbclient and ipykernel, to run the notebook')
import nbformat

from bookkeeping import locks, runs
from conftest import A_RUN, ROOT, make_cifar, project_copy

NOTEBOOK = os.path.join(ROOT, 'docs', 'colab.ipynb')
TINY = '--train-subset 40 --eval-subset 20'
PARAMETERS = {'EXPERIMENT': 'schedule', 'TRY': f'--epochs 1 {TINY}', 'ARGS': f'--epochs 5 {TINY}'}


def with_parameters(**values):
    """The notebook, with a cell after its parameters cell that sets `values`, as papermill does."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    at = next(i for i, cell in enumerate(notebook.cells) if 'parameters' in cell.metadata.get('tags', []))
    notebook.cells.insert(at + 1, nbformat.v4.new_code_cell('\n'.join(f'{k} = {v!r}' for k, v in values.items())))
    return notebook


def printed(cells):
    """What the cells printed, as one text."""
    return ''.join(output.get('text', '') for cell in cells for output in cell.get('outputs', []))


def the_cell(notebook, running):
    """The code cell whose source has `running` in it."""
    return next(cell for cell in notebook.cells if cell.cell_type == 'code' and running in cell.source)


def a_git_repository_of_this_project(folder):
    """This working tree's files, committed to a new git repository in `folder`: the notebook's REPO."""
    project_copy(folder)
    git = ['git', '-C', str(folder), '-c', 'user.name=tests', '-c', 'user.email=tests@localhost']
    for command in (['init', '-q'], ['add', '-A'], ['commit', '-q', '-m', 'the project']):
        subprocess.run([*git, *command], check=True)
    return str(folder)


def next_run_with_an_epoch(experiment, but, deadline):
    """The folder of the first run under `experiment`, other than those in `but`, that has finished an epoch."""
    while time.monotonic() < deadline:
        for metrics in experiment.glob('*/seed0/metrics.jsonl'):
            if metrics.parent not in but and metrics.read_text():
                return metrics.parent
        time.sleep(0.02)
    raise TimeoutError(f'no run under {experiment} finished an epoch')


def stop_then_disconnect(kernel, experiment, seen):
    """Once a run of the experiment has finished an epoch, press the stop button: SIGINT to the
    kernel's process group, as jupyter_client's interrupt_kernel sends it (Jupyter starts a kernel
    in a session of its own, and the commands it runs are in its group, as a terminal's Ctrl-C
    reaches a command). Once another run has, kill that group, the kernel, make and the run, as a
    Colab machine that goes away would. Records which run met each in `seen`, or what went wrong."""
    try:
        deadline = time.monotonic() + 240
        seen['stopped'] = next_run_with_an_epoch(experiment, (), deadline)
        os.killpg(kernel, signal.SIGINT)
        seen['killed'] = next_run_with_an_epoch(experiment, (seen['stopped'],), deadline)
        os.killpg(kernel, signal.SIGKILL)
    except Exception as e:  # said by the test, not lost in this thread
        seen['error'] = e


def a_free_run(folder):
    """Whether no process holds the run in `folder`: it was stopped, not left training."""
    lock = locks.acquire(os.path.join(folder, runs.LOCK))
    locks.release(lock)
    return lock is not None


def epochs(run):
    """The lines of the run's metrics.jsonl."""
    return (run / 'metrics.jsonl').read_text().splitlines()


def continued_at(text, run):
    """The epoch at which train.py, in what the notebook printed, says it continues the run."""
    said = re.findall(rf'{re.escape(str(run.relative_to(run.parents[3])))}: 40 training, 20 validation, 20 test '
                      rf'images; \S+ \S+; epoch (\d+) of 5', text)
    return int(said[-1]) if said else None


@pytest.mark.slow
@pytest.mark.exercise(*A_RUN, 'BasicBlock.forward', 'cosine_lr')  # ResNet-18 runs, and one of them cosine
def test_the_notebook_runs_an_experiment_stopped_and_disconnected_and_continues_it(tmp_path):
    repo = a_git_repository_of_this_project(tmp_path / 'resnet18-cifar10')
    here = tmp_path / 'drive'  # what Google Drive is on Colab
    project = here / 'resnet18-cifar10'
    experiment = project / 'runs' / 'schedule'

    # Top to bottom; the stop button in the middle of the experiment's first run, and its cell run
    # again; then the kernel killed in the middle of its second.
    notebook = with_parameters(REPO=repo, WHERE=str(here), **PARAMETERS)
    client = nbclient.NotebookClient(notebook, timeout=300, resources={'metadata': {'path': str(tmp_path)}})
    seen, at_stop = {}, None
    with client.setup_kernel():
        kernel = client.km.provisioner.process.pid
        threading.Thread(target=stop_then_disconnect, args=(kernel, experiment, seen), daemon=True).start()
        with pytest.raises(nbclient.exceptions.DeadKernelError):
            for index, cell in enumerate(notebook.cells):
                if (project / 'train.py').exists() and not (project / 'data').exists():
                    make_cifar(project / 'data')  # what the next cell would download: no internet here
                try:
                    client.execute_cell(cell, index)
                except nbclient.exceptions.CellExecutionError as stop:
                    stopped, at_stop = seen['stopped'], epochs(seen['stopped'])
                    assert stop.ename == 'KeyboardInterrupt' and 'stopped: ' in printed([cell]), printed([cell])
                    assert a_free_run(stopped) and not (stopped / 'summary.json').exists()
                    client.execute_cell(cell, index)  # run again, it continues; the kernel dies in it
    assert 'error' not in seen and at_stop is not None, seen.get('error', 'the stop button did not stop the cell')
    first = printed(notebook.cells)
    assert f'$ git clone {repo} {project}' in first and '--device auto trains on ' in first
    assert '| total | 200 |' in first  # Table 1, from data.py
    tried = sorted((project / 'runs-try' / 'schedule').glob('*/seed0/summary.json'))
    assert [summary.parent.parent.name for summary in tried] == ['constant', 'cosine']
    assert continued_at(first, stopped) in (len(at_stop) + 1, len(at_stop) + 2)  # + 2: stopped between two writes
    killed, at_kill = seen['killed'], epochs(seen['killed'])
    assert (killed / 'checkpoint.pt').exists() and not (killed / 'summary.json').exists()

    # Run again from the top, as after a disconnect: the same cells, nothing changed.
    made = {summary: summary.stat().st_mtime_ns for summary in tried}
    notebook = with_parameters(REPO=repo, WHERE=str(here), **PARAMETERS)
    nbclient.NotebookClient(notebook, timeout=300, resources={'metadata': {'path': str(tmp_path)}}).execute()
    again = printed(notebook.cells)
    assert '$ git clone' not in again and {summary: summary.stat().st_mtime_ns for summary in tried} == made
    assert continued_at(again, killed) in (len(at_kill) + 1, len(at_kill) + 2)  # from its checkpoint
    for run, before in ((stopped, at_stop), (killed, at_kill)):
        assert epochs(run)[:len(before)] == before and [json.loads(line)['epoch'] for line in epochs(run)] == \
            [1, 2, 3, 4, 5] and (run / 'summary.json').exists()
    # Within an epoch, train.py's progress line, as a terminal shows it: rewritten in place (a carriage
    # return, then the line again), while each epoch's line stays.
    experiment = printed([the_cell(notebook, '{EXPERIMENT} ARGS=')])
    progress = [part for part in experiment.split('\r') if 'images/s' in part]
    assert progress and all(part.lstrip().startswith('batch ') and part.rstrip().endswith('left') for part in progress)
    assert re.search(r'^epoch +5/5 ', experiment.replace('\r', '\n'), re.M), experiment
    status = printed([the_cell(notebook, ' status EXP=')])
    assert status.count(' finished ') == 2, status
    shown = [output for output in the_cell(notebook, 'report.py').outputs if output.output_type == 'display_data']
    assert 'Table 3' in shown[0].data['text/markdown'] and all('image/png' in output.data for output in shown[1:])
    assert len(shown) == 1 + len(list((project / 'figures').glob('figure*.png'))) >= 4


def test_a_repository_that_cannot_be_cloned_stops_the_notebook_there_with_git_s_reason(tmp_path):
    """A wrong REPO: the cell that clones prints git's reason and stops the notebook, as `set -e`
    would, with one line and no traceback of ours; no later cell runs."""
    notebook = with_parameters(REPO=str(tmp_path / 'nowhere.git'), WHERE=str(tmp_path), **PARAMETERS)
    client = nbclient.NotebookClient(notebook, timeout=60, resources={'metadata': {'path': str(tmp_path)}})
    with pytest.raises(nbclient.exceptions.CellExecutionError):
        client.execute()
    clone = the_cell(notebook, 'git clone')
    error, = [output for output in clone.outputs if output.output_type == 'error']
    assert (error.ename, error.evalue) == ('SystemExit', 'exit status 128: the lines above say why')
    assert f"$ git clone {tmp_path / 'nowhere.git'} {tmp_path / 'nowhere'}\nfatal: repository '{tmp_path / 'nowhere.git'}' " \
        f"does not exist" in printed([clone])
    after = notebook.cells[notebook.cells.index(clone) + 1:]
    assert all(not cell.get('outputs') for cell in after) and not (tmp_path / 'nowhere').exists()


def test_opened_from_a_copy_of_the_project_it_works_in_that_copy_however_often_its_cells_run(tmp_path):
    """docs/colab.ipynb opened where it lies, in a copy of the project (a lab machine's Jupyter):
    its first cells take that copy, and clone nothing, the second time as the first (Run all again
    in the same kernel)."""
    project_copy(tmp_path / 'copy')
    notebook = with_parameters(REPO='https://example.invalid/resnet18-cifar10.git', **PARAMETERS)
    first_cells = notebook.cells[:notebook.cells.index(the_cell(notebook, 'git clone')) + 1]
    notebook.cells = first_cells + [nbformat.from_dict(cell) for cell in first_cells]
    nbclient.NotebookClient(notebook, timeout=60, resources={'metadata': {'path': str(tmp_path / 'copy' / 'docs')}}).execute()
    assert printed(notebook.cells) == f"The project, its data/ and its runs/: {tmp_path / 'copy'}\n" * 2
