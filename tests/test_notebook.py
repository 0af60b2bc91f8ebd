"""docs/colab.ipynb, run as Colab runs it: cell after cell in a Jupyter kernel (nbclient), here off
Colab, where its first cell keeps the project in the kernel's folder instead of on Google Drive, and
clones it from a git repository of this working tree. The experiment is schedule (constant against cosine) at the tests'
scale, on the tiny data set. Then what a disconnect does: the kernel, and every process it started,
killed in the middle of a run; the notebook, run again from the top, continues that run from its
checkpoint and leaves the finished ones be."""
import json
import os
import signal
import subprocess
import threading
import time

import pytest

nbclient = pytest.importorskip('nbclient', reason='make test installs nbclient and ipykernel, to run the notebook')
import nbformat

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


def killed_after_an_epoch(client, runs, done):
    """Once a run under `runs` has finished an epoch, kill the kernel's process group, the kernel
    and the make and train.py it started, as a Colab machine that goes away would. Sets `done` to
    that run's folder and its metrics then."""
    while not done:
        for metrics in runs.glob('*/seed0/metrics.jsonl'):
            if metrics.read_text():
                os.killpg(client.km.provisioner.process.pid, signal.SIGKILL)
                done.update(run=metrics.parent, metrics=metrics.read_text())
                return
        time.sleep(0.02)


@pytest.mark.slow
@pytest.mark.exercise(*A_RUN, 'BasicBlock.forward', 'cosine_lr')  # ResNet-18 runs, and one of them cosine
def test_the_notebook_runs_an_experiment_and_after_a_disconnect_continues_it(tmp_path):
    repo = a_git_repository_of_this_project(tmp_path / 'resnet18-cifar10')
    here = tmp_path / 'kernel'  # where the kernel starts: Drive's place, off Colab
    here.mkdir()
    project, runs = here / 'resnet18-cifar10', here / 'resnet18-cifar10' / 'runs' / 'schedule'

    # Top to bottom, until the kernel is killed in the middle of the experiment's first run.
    notebook = with_parameters(REPO=repo, **PARAMETERS)
    client = nbclient.NotebookClient(notebook, timeout=300, resources={'metadata': {'path': str(here)}})
    killed = {}
    with client.setup_kernel():
        threading.Thread(target=killed_after_an_epoch, args=(client, runs, killed), daemon=True).start()
        with pytest.raises(nbclient.exceptions.DeadKernelError):
            for index, cell in enumerate(notebook.cells):
                if (project / 'train.py').exists() and not (project / 'data').exists():
                    make_cifar(project / 'data')  # what the next cell would download: no internet here
                client.execute_cell(cell, index)
    first = printed(notebook.cells)
    assert f'$ git clone {repo} resnet18-cifar10' in first
    assert 'sees no GPU here: --device auto trains on the CPU' in first and '| total | 200 |' in first
    assert sorted(run.parent.parent.name for run in (project / 'runs-try' / 'schedule').glob('*/seed0/summary.json')) == \
        ['constant', 'cosine']
    stopped = killed['run']
    assert (stopped / 'checkpoint.pt').exists() and not (stopped / 'summary.json').exists()
    epochs_before = killed['metrics'].splitlines()

    # Run again from the top, as after a disconnect: the same cells, nothing changed.
    notebook = with_parameters(REPO=repo, **PARAMETERS)
    nbclient.NotebookClient(notebook, timeout=300, resources={'metadata': {'path': str(here)}}).execute()
    again = printed(notebook.cells)
    assert '$ git clone' not in again and 'epoch   1/1' not in again  # neither cloned nor the quick try run again
    assert f'{stopped.relative_to(project)}: 40 training, 20 validation, 20 test images; cpu' in again
    assert f'; epoch {len(epochs_before) + 1} of 5' in again  # the run continued from its checkpoint
    lines = (stopped / 'metrics.jsonl').read_text().splitlines()
    assert lines[:len(epochs_before)] == epochs_before and [json.loads(line)['epoch'] for line in lines] == \
        list(range(1, 6))
    for setting in ('constant', 'cosine'):
        assert (runs / setting / 'seed0' / 'summary.json').exists()
    status = printed([the_cell(notebook, ' status EXP=')])
    assert status.count(' finished ') == 2, status
    shown = [output for output in the_cell(notebook, 'report.py').outputs if output.output_type == 'display_data']
    assert 'Table 3' in shown[0].data['text/markdown'] and all('image/png' in output.data for output in shown[1:])
    assert len(shown) == 1 + len(list((project / 'figures').glob('figure*.png'))) >= 4


def test_a_repository_that_cannot_be_cloned_stops_the_notebook_there_with_git_s_reason(tmp_path):
    """A wrong REPO: the cell that clones prints git's reason and stops the notebook, as `set -e`
    would, with one line and no traceback of ours; no later cell runs."""
    notebook = with_parameters(REPO=str(tmp_path / 'nowhere.git'), **PARAMETERS)
    client = nbclient.NotebookClient(notebook, timeout=60, resources={'metadata': {'path': str(tmp_path)}})
    with pytest.raises(nbclient.exceptions.CellExecutionError):
        client.execute()
    clone = the_cell(notebook, 'git clone')
    error, = [output for output in clone.outputs if output.output_type == 'error']
    assert (error.ename, error.evalue) == ('SystemExit', 'exit status 128: the lines above say why')
    assert f"$ git clone {tmp_path / 'nowhere.git'} nowhere\nfatal: repository '{tmp_path / 'nowhere.git'}' does not exist" \
        in printed([clone])
    after = notebook.cells[notebook.cells.index(clone) + 1:]
    assert all(not cell.get('outputs') for cell in after) and not (tmp_path / 'nowhere').exists()
