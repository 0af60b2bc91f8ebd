"""slurm.py and slurm_task.sh promise the study on a Slurm cluster: one command submits every
unfinished run of a make target as one job array and returns; each task runs one run through make;
a task requeued as it trains, or told its time is up, stops with its last epoch on disk and
continues from there, to the run never interrupted; each task's log, appended across requeues,
is in its run's folder; a task that cannot run fails once, and is not requeued; and the data set is
in place before anything is submitted.

The cluster is real, not a mock: the fixture starts munged, slurmctld and slurmd on this machine,
from Debian's packages (`apt-get install -y slurm-wlm munge`, which .ci/run does), with their
configuration and state in a temporary folder. Where Slurm is missing, the tests that need the
cluster are skipped, with the reason."""
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from bookkeeping import download
from runner import slurm
import test_makefile
import test_study
from conftest import A_RUN, MAKE, ROOT, metrics, project_copy, train_py, without_seconds, write_run

DAEMONS = ('munged', 'mungekey', 'slurmctld', 'slurmd', 'sbatch', 'squeue', 'scontrol', 'scancel', 'sinfo')
PATH = os.environ.get('PATH', '') + ':/usr/sbin:/sbin'


def why_not():
    """None where a test cluster can start here, else why not, and what to do."""
    absent = [name for name in DAEMONS if not shutil.which(name, path=PATH)]
    if absent:
        return f'no Slurm here ({", ".join(absent)} not found): `apt-get install -y slurm-wlm munge`, as root, runs these tests'
    if os.geteuid() != 0:
        return 'the test cluster\'s daemons run as root: run these tests as root'
    return None


def on_a_cluster(test):
    """A test that needs the test cluster: slow, and skipped, with the reason, where Slurm is missing."""
    return pytest.mark.slow(pytest.mark.skipif(why_not() is not None, reason=why_not() or '')(test))

# One node, this machine, with no cgroups and no accounting. Requeued tasks start again within
# seconds: sched_interval=2 and cred_expire=5 (the smallest Slurm takes), instead of minutes.
CONF = """ClusterName=test
SlurmctldHost=localhost
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket},cred_expire=5
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
SchedulerParameters=sched_interval=2
KillWait=10
NodeName=localhost CPUs=4 State=UNKNOWN
PartitionName=test Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


def free_ports(count):
    """Ports nobody listens on, below the kernel's range for outgoing connections."""
    ports = []
    while len(ports) < count:
        port = random.randrange(20000, 32000)
        with socket.socket() as s:
            with contextlib.suppress(OSError):
                s.bind(('', port))
                ports.append(port)
    return ports


def wait_for(condition, what, timeout=120):
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, f'timed out waiting for {what}'
        time.sleep(0.1)


def leftovers(conf):
    """The processes of this cluster's jobs: those whose environment names its slurm.conf."""
    mine = f'SLURM_CONF={conf}'.encode()
    found = []
    for pid in filter(str.isdigit, os.listdir('/proc')):
        with contextlib.suppress(OSError):
            if mine in open(f'/proc/{pid}/environ', 'rb').read().split(b'\0'):
                found.append(int(pid))
    return found


def submitted_without_sbatch(monkeypatch, tmp_path, data_dir):
    """slurm.py's submission of one run on a machine without sbatch: what it does before it asks Slurm."""
    monkeypatch.setenv('PATH', str(tmp_path / 'no-slurm-here'))
    with pytest.raises(SystemExit) as exit_info:
        slurm.main([str(tmp_path / 'runs/lr-sweep/lr0.1/seed0'), '--runs', str(tmp_path / 'runs'),
                    '--make', f'ARGS=--epochs 1 --data-dir {data_dir}'])
    return str(exit_info.value)


def test_the_data_set_is_put_in_place_before_the_study_is_submitted(monkeypatch, tmp_path, cifar_root):
    """Compute nodes are often offline: the submitting node unpacks (or downloads) CIFAR-10 into
    the --data-dir the runs will read, before it asks Slurm for anything."""
    data_dir = test_makefile.archive_only(tmp_path / 'data', cifar_root)
    assert 'sbatch not found' in submitted_without_sbatch(monkeypatch, tmp_path, data_dir)
    assert os.path.isdir(data_dir / 'cifar-10-batches-py')


def test_a_relative_data_dir_is_the_project_s_where_the_tasks_run_whatever_the_folder_make_runs_in(
        monkeypatch, tmp_path, cifar_root):
    """The tasks run in the project's folder: a relative --data-dir in ARGS is fetched there, not
    where make (or make seeds) happens to run."""
    monkeypatch.setattr(download, 'URL', (tmp_path / 'offline').as_uri())  # the archive is the only way
    data_dir = test_makefile.archive_only(tmp_path / 'data', cifar_root)
    (tmp_path / 'elsewhere').mkdir()
    monkeypatch.chdir(tmp_path / 'elsewhere')
    assert 'sbatch not found' in submitted_without_sbatch(monkeypatch, tmp_path, os.path.relpath(data_dir, ROOT))
    assert os.path.isdir(data_dir / 'cifar-10-batches-py') and os.listdir(tmp_path / 'elsewhere') == []


def test_no_data_set_and_no_download_submits_nothing_with_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(download, 'URL', (tmp_path / 'offline').as_uri())  # stands for an unreachable server
    error = submitted_without_sbatch(monkeypatch, tmp_path, tmp_path / 'data')
    assert error.startswith('slurm.py: error: nothing submitted: the compute nodes read CIFAR-10 from ')
    assert 'could not download CIFAR-10' in error and len(error.splitlines()) == 1
    assert not (tmp_path / 'runs' / 'slurm').exists()


def test_only_runs_that_have_not_ended_are_submitted_and_those_to_start_over(tmp_path):
    """A finished run and a diverged one have ended: no task is spent on them (a diverged run would
    diverge again); an interrupted run, one not started, and an ended run make's FORCE=1 starts over
    each get a task."""
    finished, diverged, interrupted, not_started, forced = (str(tmp_path / name) for name in (
        'finished', 'diverged', 'interrupted', 'not-started', 'forced'))
    write_run(finished)
    write_run(diverged, val_accs=(0.3, 0.1), summary='diverged')
    write_run(interrupted, summary=False)
    (tmp_path / 'interrupted/checkpoint.pt').write_bytes(b'')
    write_run(forced)
    todo, damaged = slurm.unended([finished, diverged, interrupted, not_started, forced], start_over=[forced])
    assert todo == [interrupted, not_started, forced] and damaged == []


@pytest.fixture(scope='module')
def cluster(tmp_path_factory):
    """A Slurm cluster of one node, this machine: the environment that sbatch and the rest need."""
    folder = tmp_path_factory.mktemp('slurm')
    # munged wants every folder above its socket searchable by all, and a short path: not pytest's.
    socket_folder = tempfile.mkdtemp(prefix='munge-', dir='/tmp')
    os.chmod(socket_folder, 0o755)
    key, munge_socket = folder / 'munge.key', os.path.join(socket_folder, 'socket')
    subprocess.run(['mungekey', '--create', '--force', '--keyfile', str(key)], check=True, env={'PATH': PATH})
    os.chmod(key, 0o400)
    ctld_port, slurmd_port = free_ports(2)
    conf = folder / 'slurm.conf'
    conf.write_text(CONF.format(folder=folder, munge_socket=munge_socket, ctld_port=ctld_port, slurmd_port=slurmd_port))
    env = {k: v for k, v in os.environ.items() if not k.startswith('SLURM')} | {'SLURM_CONF': str(conf), 'PATH': PATH}
    start = lambda *command: subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                              start_new_session=True)
    daemons = [start('munged', '--foreground', f'--socket={munge_socket}', f'--key-file={key}',
                     f'--pid-file={folder}/munged.pid', f'--seed-file={folder}/munged.seed')]
    try:
        wait_for(lambda: os.path.exists(munge_socket), 'munged')
        daemons += [start('slurmctld', '-D', '-i'), start('slurmd', '-D', '-N', 'localhost')]
        idle = lambda: subprocess.run(['sinfo', '-h', '-o', '%t'], env=env, capture_output=True, text=True).stdout.strip()
        wait_for(lambda: idle() == 'idle', 'the node to be idle')
        yield env
    finally:  # the jobs first: slurmd leaves them running when it stops
        subprocess.run(['scancel', '--full', '--partition', 'test'], env=env, capture_output=True)
        for daemon in reversed(daemons):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(daemon.pid, signal.SIGTERM)
            daemon.wait(timeout=30)
        for pid in leftovers(conf):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(socket_folder, ignore_errors=True)


def job_ended(env, job):
    shown = subprocess.run(['squeue', '-h', '-j', job], env=env, capture_output=True, text=True)
    return shown.returncode != 0 or not shown.stdout.strip()  # gone, or forgotten already


@pytest.mark.exercise(*A_RUN, 'BasicBlock.forward')
@on_a_cluster
def test_the_study_runs_on_slurm_through_a_requeue_and_a_time_limit(cluster, cifar_root, tmp_path):
    """The lr sweep as a job array of three tasks. As they train, task 0 is requeued (what
    preemption does too) and task 1 is told that its time is up (the signal sbatch --signal sends
    before a time limit). Both stop with their last finished epoch on disk, start again, and end
    with the metrics of the same runs never interrupted, made here."""
    runs_dir = tmp_path / 'runs'
    flags = ['--epochs', '3', '--train-subset', '60', '--eval-subset', '10', '--batch-size', '20', '--device', 'cpu',
             '--data-dir', cifar_root]
    env = cluster | {'OMP_NUM_THREADS': '1'}  # three runs at once on this machine's cores
    submitted = subprocess.run([*MAKE, 'lr-sweep', f'RUNS={runs_dir}', f'ARGS={" ".join(flags)}',
                                'SLURM=--time=30'], env=env, capture_output=True, text=True, timeout=180)
    assert submitted.returncode == 0, submitted.stderr
    job = re.search(r'submitted job (\d+): 3 of 3 runs', submitted.stdout).group(1)
    assert f'squeue -j {job}' in submitted.stdout and f'scancel {job}' in submitted.stdout
    folders = [runs_dir / 'lr-sweep' / setting / 'seed0' for setting in ('lr0.1', 'lr0.01', 'lr0.001')]
    for task, (folder, stop) in enumerate(zip(folders, (['scontrol', 'requeue'], ['scancel', '--batch', '--signal=USR1']))):
        wait_for(lambda: os.path.exists(folder / 'checkpoint.pt'), f'task {task}\'s first epoch', timeout=300)
        assert not os.path.exists(folder / 'summary.json'), f'task {task} ended before it could be stopped'
        subprocess.run([*stop, f'{job}_{task}'], env=env, check=True)
    wait_for(lambda: job_ended(env, job), 'the job array to end', timeout=300)

    for folder in folders:
        assert os.path.exists(folder / 'summary.json'), (folder / 'slurm.log').read_text()
    # The two stopped runs against the same runs never interrupted, made here at once, one thread each,
    # as on the cluster (other thread counts round otherwise). Task 2's run was never interrupted.
    references = [train_py('--lr', lr, '--epochs', '15', *flags, '--out', str(tmp_path / f'reference{lr}'), wait=False,
                           env={'OMP_NUM_THREADS': '1'}) for lr in ('0.1', '0.01')]
    for folder, lr, made in zip(folders, ('0.1', '0.01'), references):
        assert made.wait(timeout=300) == 0, made.stderr.read()
        assert without_seconds(metrics(folder)) == without_seconds(metrics(tmp_path / f'reference{lr}'))
    requeued, timed_out, left_alone = ((folder / 'slurm.log').read_text() for folder in folders)
    assert 'start 1 on' in requeued and 'start 2 on' in requeued and 'DUE TO JOB REQUEUE' in requeued
    assert f'stopped: {folders[0]}/checkpoint.pt holds the last finished epoch' in requeued
    assert 'stopped before the time limit after epoch' in timed_out and 'start 2 on' in timed_out
    assert 'start 2' not in left_alone and 'make ended with status 0' in left_alone
    again = subprocess.run([*MAKE, 'lr-sweep', f'RUNS={runs_dir}', f'ARGS={" ".join(flags)}', 'SLURM=--time=30'],
                           env=env, capture_output=True, text=True, timeout=180)
    assert again.stdout.startswith('nothing to submit: all 3 runs have ended')


def erase_submitted(cluster, runs_dir, args):
    """`make erase` (one run) submitted to the test cluster with ARGS=args: its job's id."""
    submitted = subprocess.run([*MAKE, 'erase', f'RUNS={runs_dir}', f'ARGS={args}', 'SLURM=--time=30'], env=cluster,
                               capture_output=True, text=True, timeout=180)
    assert submitted.returncode == 0, submitted.stderr
    return re.search(r'submitted job (\d+): 1 of 1 runs', submitted.stdout).group(1)


@on_a_cluster
def test_a_task_whose_run_cannot_start_on_its_node_fails_once_and_is_not_requeued(cluster, cifar_root, tmp_path):
    """A task on a node without the hardware its run needs (here a CUDA GPU; a bf16 run on an older
    GPU is refused the same way, tests/test_hardware.py) fails with train.py's one line in its
    slurm.log, and ends: it is not requeued to fail again and again."""
    runs_dir = tmp_path / 'runs'
    job = erase_submitted(cluster, runs_dir, f'--epochs 1 --train-subset 20 --eval-subset 10 --device cuda --data-dir {cifar_root}')
    wait_for(lambda: job_ended(cluster, job), 'the job to end', timeout=300)
    log = (runs_dir / 'erase/p1.0/seed0/slurm.log').read_text()
    assert 'train.py: error: --device cuda: this machine has no CUDA GPU that torch can use' in log
    assert log.count(' start ') == 1 and 'make ended with status 2' in log, log


@on_a_cluster
def test_a_task_told_its_time_is_up_before_its_first_epoch_ended_is_not_requeued(cluster, cifar_root, tmp_path):
    """A time limit shorter than an epoch: a task told that its time is up (the signal sbatch
    --signal sends) before its run finished an epoch stops, says why in its slurm.log, and ends:
    requeued, it would only come back to the same place."""
    runs_dir = tmp_path / 'runs'
    job = erase_submitted(cluster, runs_dir, f'--epochs 1 --batch-size 20 --device cpu --data-dir {cifar_root}')
    log = runs_dir / 'erase/p1.0/seed0/slurm.log'
    wait_for(lambda: log.exists() and ' start 1 on ' in log.read_text(), 'the task to start')
    subprocess.run(['scancel', '--batch', '--signal=USR1', f'{job}_0'], env=cluster, check=True)
    wait_for(lambda: job_ended(cluster, job), 'the job to end', timeout=300)
    said = log.read_text()
    assert 'stopped before the time limit without finishing an epoch; not requeued: give it a longer --time' in said
    assert said.count(' start ') == 1 and not (runs_dir / 'erase/p1.0/seed0/checkpoint.pt').exists(), said


@pytest.mark.exercise(*A_RUN, 'BasicBlock.forward')
@on_a_cluster
def test_an_experiment_added_to_study_toml_is_submitted_as_the_others_are(cluster, cifar_root, tmp_path):
    """The README's worked example, one edit in a copy of the project, submitted to the cluster:
    an array of its two runs, each of which ends. The copy has no .venv: each task's make runs with
    the Python that make's PY= named, as on a cluster whose torch is a module, and builds none."""
    project = tmp_path / 'project'
    make = project_copy(project)
    test_study.with_momentum(project)
    runs_dir = tmp_path / 'runs'
    args = f'ARGS=--epochs 1 --train-subset 20 --eval-subset 10 --device cpu --data-dir {cifar_root}'
    submitted = subprocess.run([*make, 'momentum', f'RUNS={runs_dir}', args, 'SLURM=--time=30'], env=cluster,
                               capture_output=True, text=True, timeout=180)
    assert submitted.returncode == 0, submitted.stderr
    job = re.search(r'submitted job (\d+): 2 of 2 runs', submitted.stdout).group(1)
    wait_for(lambda: job_ended(cluster, job), 'the job to end', timeout=300)
    for folder in ('m0.9', 'm0'):
        log = (runs_dir / 'momentum' / folder / 'seed0' / 'slurm.log').read_text()
        assert (runs_dir / 'momentum' / folder / 'seed0' / 'summary.json').exists() and 'make ended with status 0' in log, log
    assert not (project / '.venv').exists()


@pytest.mark.exercise(*A_RUN, 'BasicBlock.forward', 'cosine_lr', 'welch')
@on_a_cluster
def test_make_seeds_runs_each_round_as_one_array_and_plans_the_next_once_it_has_ended(cluster, cifar_root, tmp_path):
    """make seeds EXP=schedule MAX_SEEDS=3 SLURM=--time=30, with one-epoch runs. At one epoch,
    cosine's one rate is lr 0.01, the constant rate: the two settings make the same run for each
    seed (one thread each), a margin of 0, so their comparison stays open to the cap. Round 1 is one
    array of four runs (seeds 0 and 1 of each), round 2 one of two (seed 2 of each), each waited for
    by sbatch --wait: round 2's runs start after round 1's have ended. Then it stops."""
    runs_dir = tmp_path / 'runs'
    args = f'ARGS=--epochs 1 --train-subset 20 --eval-subset 10 --batch-size 10 --device cpu --data-dir {cifar_root}'
    # sbatch --wait asks after 2 s whether the job has ended, then 8 s later, then every 32 s, unless
    # its slurm.conf's MinJobAge is below 4 s (Slurm 22.05, sbatch.c, _job_wait): a copy that says so,
    # read by sbatch alone, keeps it asking every 2 s, which saves half a minute here. The cluster's
    # daemons, which purge ended jobs after MinJobAge, keep their own.
    conf = tmp_path / 'slurm.conf'
    conf.write_text(open(cluster['SLURM_CONF']).read() + 'MinJobAge=3\n')
    made = subprocess.run([*MAKE, 'seeds', f'RUNS={runs_dir}', 'EXP=schedule', 'MAX_SEEDS=3', args, 'SLURM=--time=30'],
                          env=cluster | {'OMP_NUM_THREADS': '1', 'SLURM_CONF': str(conf)}, capture_output=True,
                          text=True, timeout=300)
    assert made.returncode == 0, made.stdout + made.stderr
    assert re.findall(r'submitted job \d+: (\d) of \1 runs', made.stdout) == ['4', '2'], made.stdout
    assert 'one Slurm job array, seeds-round1, waited for' in made.stdout
    assert '  at the cap: cosine against constant: within noise at 3 seeds a setting: +0.00' in made.stdout
    assert made.stdout.count('done after 2 rounds: no comparison is open') == 1
    rounds = [[runs_dir / 'schedule' / setting / f'seed{n}' for setting in ('constant', 'cosine') for n in seeds]
              for seeds in ((0, 1), (2,))]
    for folder in rounds[0] + rounds[1]:
        assert 'make ended with status 0' in (folder / 'slurm.log').read_text(), folder
    ended = max(json.loads((folder / 'summary.json').read_text())['finished'] for folder in rounds[0])
    started = min(json.loads((folder / 'config.json').read_text())['started'] for folder in rounds[1])
    assert ended < started
    assert sorted(os.listdir(runs_dir / 'schedule' / 'cosine')) == ['seed0', 'seed1', 'seed2']

