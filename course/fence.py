"""The fence around a student's code while a class is graded: the worker (course/worker.py), which
runs the student's functions for the checks (course/apart.py), starts here, fenced, and is stopped
here, with everything it started.

    a user of its own   as root, the worker runs as uid and gid FIRST_UID + slot (setpriv), no
                        root mapped: it reads only what any user may, and what it is given
    bubblewrap          where `bwrap` works (Debian's bubblewrap): a file system of its own, with
                        /usr and the Python's own folders read-only, its chapters (with the
                        bookkeeping/ they import), worker.py and wire.py read-only, and a /tmp of at most limits.tmp_bytes; no /root, /home or
                        /etc, no tests, no instructor's project, no other student, no gradebook;
                        no network; processes of its own (it sees and signals none of the grader's)
    limits              prlimit(1): each process's address space (RLIMIT_AS, a MemoryError where it
                        allocates), each file it writes, its stderr included (RLIMIT_FSIZE), no core
                        files, and its processes (RLIMIT_NPROC); as root, a memory cgroup of the
                        slot's own (memory.max or v1's limit_in_bytes: every process and /tmp page
                        of the slot) and a pids cgroup, where the machine has them
    stopped             at the end, at a test's time limit or when it broke its answers: its
                        process group killed, and every process of its cgroups

No Python runs in a child between fork and exec (no preexec_fn, which the grader's threads would
make unsafe): the limits are set by setpriv and prlimit, and a shell joins the cgroups and execs.
Where bubblewrap is missing or refused, and the grader is not root, the worker runs as the grader's
user and can read and write what it can: the gradebook says so on every row.
"""
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import NamedTuple

FIRST_UID = 60000  # as root, slot k of `-j` runs its worker as uid and gid FIRST_UID + k
CGROUPS = '/sys/fs/cgroup'
GIVEN = ('worker.py', 'wire.py')  # the files of course/ the worker is given
INSIDE = '/grade'  # in bubblewrap, the worker's chapters are INSIDE/chapters, its given files INSIDE/given


class Limits(NamedTuple):
    test_seconds: float = 60           # a test running longer fails, with that reason
    submission_seconds: float = 900    # then every process of the submission is killed: a backstop
    memory_bytes: int = 6 * 2 ** 30    # each process's address space, and the slot's memory in all; torch takes 3.2 GB of address space
    processes: int = 256               # processes and threads at once
    output_bytes: int = 64 * 2 ** 20   # each file it writes, what it prints included
    tmp_bytes: int = 256 * 2 ** 20     # its /tmp, in bubblewrap

    def described(self):
        return (f'{self.test_seconds:g} s a test, {self.submission_seconds:g} s in all, '
                f'{self.memory_bytes / 2 ** 30:g} GB of memory, {self.processes} processes, '
                f'{self.output_bytes / 2 ** 20:g} MB of output, {self.tmp_bytes / 2 ** 20:g} MB of /tmp')


def prepare(work, chapters, slot):
    """work/chapters with the chapters (a dict: name -> path; a folder is copied whole) and
    work/given with the worker's files, readable by the worker of `slot` and by no other."""
    os.makedirs(work, exist_ok=True)
    os.chmod(work, 0o711)  # without bubblewrap the worker reaches its folders by their paths
    for folder, files in (('chapters', chapters), ('given', {n: os.path.join(os.path.dirname(__file__), n) for n in GIVEN})):
        target = os.path.join(work, folder)
        os.makedirs(target)
        for name, source in files.items():
            (shutil.copytree if os.path.isdir(source) else shutil.copyfile)(source, os.path.join(target, name))
        for place, dirs, names in os.walk(target):
            for name in dirs + names:
                os.chmod(os.path.join(place, name), 0o750 if name in dirs else 0o640)
                if os.geteuid() == 0:
                    os.chown(os.path.join(place, name), 0, FIRST_UID + slot)
        os.chmod(target, 0o750)
        if os.geteuid() == 0:
            os.chown(target, 0, FIRST_UID + slot)


def start_worker(work, limits, slot, sandboxed, threads=1):
    """The worker for the chapters in `work` (prepared), fenced: a Popen whose stdin and stdout
    carry the requests and answers (course/wire.py), and whose stderr, what the student's code
    prints, goes to work/printed.txt. It computes with `threads` threads: the checks' own number, so
    that its sums round as theirs do."""
    limits, work = Limits(**limits), os.path.realpath(work)
    uid = FIRST_UID + slot
    tmp = os.path.join(work, f'tmp-{time.monotonic_ns()}')  # a fresh one each start
    os.mkdir(tmp, 0o700)
    if os.geteuid() == 0:
        os.chown(tmp, uid, uid)
    chapters, given = (os.path.join(work, 'chapters'), os.path.join(work, 'given')) if not sandboxed else \
        (f'{INSIDE}/chapters', f'{INSIDE}/given')
    python = sys.executable
    if os.path.dirname(python) == os.path.join(sys.prefix, 'bin'):  # a venv's: named where it really is
        python = os.path.join(os.path.realpath(sys.prefix), 'bin', os.path.basename(python))
    # Processes: counted per user; the grader's own user has some already.
    processes = limits.processes + (0 if os.geteuid() == 0 else len(processes_of(os.getuid())))
    # Killed with the checks' process, however that ends; and, as root, a user of its own.
    as_user = [f'--reuid={uid}', f'--regid={uid}', '--clear-groups'] if os.geteuid() == 0 else []
    command = ['prlimit', f'--as={limits.memory_bytes}', f'--fsize={limits.output_bytes}', '--core=0',
               f'--nproc={processes}', '--', 'setpriv', '--pdeathsig', 'KILL', *as_user, '--',
               python, '-E', '-s', '-B', os.path.join(given, 'worker.py'), chapters]
    env = {'PATH': '/usr/bin:/bin', 'HOME': '/tmp' if sandboxed else tmp, 'TMPDIR': '/tmp' if sandboxed else tmp,
           'USER': 'student', 'LOGNAME': 'student', 'OMP_NUM_THREADS': str(threads), 'MPLBACKEND': 'Agg', 'LANG': 'C.UTF-8'}
    if sandboxed:
        command = [*bubblewrap(work, limits, env), *command]
    groups = cgroups(f'grade-{os.getpid()}-{slot}', limits)
    joined = ''.join(f'echo $$ > {shlex.quote(os.path.join(g, "cgroup.procs"))} && ' for g in groups)
    with open(os.path.join(work, 'printed.txt'), 'ab') as printed:
        process = subprocess.Popen(['/bin/sh', '-c', f'{joined}exec "$@"', 'fence', *command], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=printed, cwd=tmp, env=env, start_new_session=True)
    process.cgroups = groups
    return process


def processes_of(uid, zombies=False):
    """The pids of the live processes whose real uid is `uid`; with None, of every live process. A
    zombie has ended, and waits only for its parent to read its status: not counted, unless `zombies`."""
    pids = []
    for name in os.listdir('/proc'):
        if name.isdigit():
            try:
                with open(f'/proc/{name}/status') as f:
                    status = dict(line.split(':', 1) for line in f if ':' in line)
            except OSError:
                continue
            if (zombies or not status.get('State', 'Z').strip().startswith('Z')) \
                    and (uid is None or int(status['Uid'].split()[0]) == uid):
                pids.append(int(name))
    return pids


def pgid(pid):
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def bubblewrap(work, limits, env):
    """bwrap's command line for the worker of `work`: the file system it sees, nothing else."""
    paths = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}
    paths |= {os.path.realpath(p) for p in sys.path if os.path.basename(p) in ('site-packages', 'dist-packages')
              and os.path.isdir(p)}
    paths = sorted(p for p in paths if not p.startswith('/usr/') and not any(p.startswith(q + os.sep) for q in paths))
    binds = []
    for path in paths:
        parts = path.strip('/').split('/')
        for depth in range(1, len(parts)):  # the folders above it, which bubblewrap would make 0700
            binds += ['--perms', '0755', '--dir', '/' + '/'.join(parts[:depth])]
        binds += ['--ro-bind', path, path]
    top = []
    for name in ('bin', 'lib', 'lib32', 'lib64', 'sbin'):
        if os.path.islink(f'/{name}'):
            top += ['--symlink', os.readlink(f'/{name}'), f'/{name}']
        elif os.path.isdir(f'/{name}'):
            top += ['--ro-bind', f'/{name}', f'/{name}']
    unshare_user = [] if os.geteuid() == 0 else ['--unshare-user']
    return ['bwrap', *unshare_user, '--unshare-ipc', '--unshare-pid', '--unshare-net', '--unshare-uts',
            '--unshare-cgroup-try', '--die-with-parent', '--new-session', '--ro-bind', '/usr', '/usr', *top,
            '--proc', '/proc', '--dev', '/dev', '--perms', '1777', '--size', str(limits.tmp_bytes), '--tmpfs', '/tmp',
            *binds, '--perms', '0755', '--dir', INSIDE, '--ro-bind', os.path.join(work, 'chapters'), f'{INSIDE}/chapters',
            '--ro-bind', os.path.join(work, 'given'), f'{INSIDE}/given', '--chdir', '/tmp', '--clearenv',
            *[arg for key, value in env.items() for arg in ('--setenv', key, value)], '--']


def why_no_bubblewrap():
    """'' if bubblewrap fences a worker here; else why not, in a few words."""
    if not shutil.which('bwrap'):
        return 'bubblewrap is not installed'
    with tempfile.TemporaryDirectory() as work:
        for folder in ('chapters', 'given'):
            os.mkdir(os.path.join(work, folder))
        tried = subprocess.run([*bubblewrap(work, Limits(), {'PATH': '/usr/bin:/bin'}), 'true'], capture_output=True, text=True)
    return '' if tried.returncode == 0 else f'bubblewrap refused: {(tried.stderr.strip().splitlines() or ["?"])[-1]}'


def unfenced():
    """What the students' code could do where bubblewrap does not fence it, for the gradebook's notes."""
    if os.geteuid() == 0:
        return 'their code ran as an unprivileged user, with the network on, and could read what any user may'
    return 'their code ran as you, with the network on, and could read and write what you can'


def cgroups(name, limits):
    """The slot's cgroups, each with its limit, where the grader may make them (root; cgroup v2's one
    hierarchy, or v1's pids and memory ones): their folders."""
    made = []
    for folder, settings in zip(cgroup_folders(name), ({'pids.max': limits.processes, 'memory.max': limits.memory_bytes},
                                                        {'pids.max': limits.processes},
                                                        {'memory.limit_in_bytes': limits.memory_bytes})):
        if not os.path.exists(os.path.join(os.path.dirname(folder), 'cgroup.procs')):
            continue
        try:
            os.makedirs(folder, exist_ok=True)
            for key, value in settings.items():
                with open(os.path.join(folder, key), 'w') as f:
                    f.write(str(value))
            made.append(folder)
        except OSError:  # not ours to make, or a controller this hierarchy lacks: the next, or none
            remove_cgroup(folder, tries=1)
    return made


def cgroup_folders(name):
    """Where a cgroup `name` would be: in cgroup v2's hierarchy, or in v1's pids and memory ones."""
    return [os.path.join(CGROUPS, name), os.path.join(CGROUPS, 'pids', name), os.path.join(CGROUPS, 'memory', name)]


def stop_worker(process):
    """The worker killed, with every process it left, and its cgroups removed."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()  # not a zombie, which kill_all would wait for
    kill_all(process.pid, process.cgroups)
    for pipe in (process.stdin, process.stdout):
        try:
            pipe.close()
        except OSError:
            pass
    for group in process.cgroups:
        remove_cgroup(group)


def clean_up(checks, slot):
    """After the checks' process `checks` ended, however it ended: every process its worker in `slot`
    left killed (as root, every process of the slot's user too), and the slot's cgroups removed."""
    groups = [g for g in cgroup_folders(f'grade-{checks}-{slot}') if os.path.isdir(g)]
    kill_all(None, groups, FIRST_UID + slot if os.geteuid() == 0 else None)
    for group in groups:
        remove_cgroup(group)


def kill_all(group, cgroups, uid=None):
    """SIGKILL to every process of the process group `group`, of the cgroups, and of user `uid`,
    until none is left, not even as a zombie: one still counts against its user's RLIMIT_NPROC until
    init has reaped it."""
    for _ in range(250):
        left = {pid for pid in processes_of(uid, zombies=True) if uid is not None or group is not None and pgid(pid) == group}
        for folder in cgroups:
            try:
                with open(os.path.join(folder, 'cgroup.procs')) as f:
                    left |= {int(pid) for pid in f.read().split()}
            except OSError:
                pass
        if not left:
            return
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.02)


def ended(status):
    """How the worker ended, from its exit status, in a few words: bwrap and the shell report a
    signal as 128 + its number."""
    number = -status if status < 0 else status - 128 if status > 128 else 0
    if number:
        return {signal.SIGKILL: 'was killed (SIGKILL): out of memory, or by its own code',
                signal.SIGSEGV: 'crashed: segmentation fault', signal.SIGABRT: 'crashed: aborted'}.get(
            number, f'ended by signal {number}')
    return f'exited with status {status}'


def remove_cgroup(folder, tries=100):
    """A cgroup, once the kernel has let go of its last process (a zombie's parent may take a moment)."""
    for _ in range(tries):
        if not os.path.isdir(folder):
            return
        try:
            os.rmdir(folder)
        except OSError:
            time.sleep(0.05)
