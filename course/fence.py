"""The fence around a student's code while the instructor's tests run it: a folder of its own, its
own process group, limits on time, memory, processes and output, and, where the machine allows,
no network and nothing writable outside its folder.

A submission that loops forever (the test's time limit, course/recorder.py, then the whole
submission's), allocates far past its memory, fork-bombs, segfaults, prints a gigabyte, kills its
parent process or writes outside its folder costs that submission only, and its row says why:

    limits      setrlimit(2) before the tests start: each process's address space (RLIMIT_AS: a
                MemoryError in the test), any file's size, the output's included (RLIMIT_FSIZE), no
                core files; and a wall clock, after which every process of the submission is killed
    processes   a pids cgroup of the slot's own (pids.max), where the grader may make one (root,
                on cgroup v1 or v2); else RLIMIT_NPROC, which binds every user but root
    bubblewrap  where `bwrap` is installed and works (Debian's bubblewrap; some distributions refuse
                the user namespaces it needs): no network (--unshare-net), processes of its own
                (--unshare-pid: it sees, and can signal, none of the grader's), the whole file
                system read-only but its folder and a /tmp of its own; as root, run as a user
                FIRST_UID + slot of a user namespace of its own, with no power outside it
    a warden    the tests run under /bin/sh, which waits for them: a submission that kills its
                parent kills that shell, not the grader

Where bubblewrap is missing or refused, the gradebook says so, and the fence is the limits and
the warden alone: code written to attack the grading machine, run as the grader's user, could
then reach the network, the grader's files and its processes. For a class that may hold such
code, grade where bubblewrap works, or in Gradescope's container (`make autograder`). No fence
keeps a test's own process from lying in the record of its outcomes: the record is parsed as
data, never run, so a lie costs at most that submission's grade.
"""
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from typing import NamedTuple

FIRST_UID = 60000  # as root, slot k of `-j` runs as uid FIRST_UID + k of its user namespace
OUTPUT = 'output.txt'
CGROUPS = ('/sys/fs/cgroup/pids', '/sys/fs/cgroup')  # cgroup v1's pids hierarchy, or v2's single one


class Limits(NamedTuple):
    test_seconds: float = 60           # a test running longer fails, with that reason
    submission_seconds: float = 900    # then every process of the submission is killed: a backstop
    memory_bytes: int = 6 * 2 ** 30    # address space of each process; importing torch alone takes 3.2 GB of it
    processes: int = 256               # processes and threads at once
    output_bytes: int = 64 * 2 ** 20   # each file it writes, its output included

    def described(self):
        return (f'{self.test_seconds:g} s a test, {self.submission_seconds:g} s in all, '
                f'{self.memory_bytes / 2 ** 30:g} GB of memory a process, {self.processes} processes, '
                f'{self.output_bytes / 2 ** 20:g} MB of output')


class Ran(NamedTuple):
    status: int        # the exit status, or minus the signal that ended the warden
    stopped: str       # '' or why the fence ended it: 'time'
    output: str        # the end of its output


def bubblewrap(folder, slot, hidden=()):
    """The command that runs a command in bubblewrap, fenced to `folder`: each folder of `hidden`
    (the instructor's project, with its solutions) an empty one, but for the Python that runs the
    tests, which may live in it (.venv)."""
    as_user = ['--unshare-user', '--uid', str(FIRST_UID + slot), '--gid', str(FIRST_UID + slot)] if os.geteuid() == 0 else []
    hide = [arg for path in hidden for arg in ('--tmpfs', os.path.realpath(path))]
    python = os.path.realpath(sys.prefix)  # seen again if it was hidden, or stood in /tmp
    keep = ['--ro-bind', python, python] if any(python.startswith(os.path.realpath(path) + os.sep)
                                                for path in (*hidden, '/tmp')) else []
    return ['bwrap', *as_user, '--ro-bind', '/', '/', '--dev', '/dev', '--proc', '/proc', '--tmpfs', '/tmp', *hide, *keep,
            '--bind', folder, folder, '--unshare-net', '--unshare-pid', '--die-with-parent', '--chdir', folder]


def why_no_bubblewrap(folder):
    """'' if bubblewrap fences a command in `folder` here; else why not, in a few words."""
    if not shutil.which('bwrap'):
        return 'bubblewrap is not installed'
    tried = subprocess.run([*bubblewrap(folder, 0), 'true'], capture_output=True, text=True)
    return '' if tried.returncode == 0 else f'bubblewrap refused: {(tried.stderr.strip().splitlines() or ["?"])[-1]}'


def pids_cgroup(name, limit):
    """A pids cgroup `name` with pids.max `limit`, if the grader may make one here: its folder; else None."""
    for base in CGROUPS:
        if not os.path.exists(os.path.join(base, 'cgroup.procs')):
            continue
        folder = os.path.join(base, name)
        try:
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, 'pids.max'), 'w') as f:
                f.write(str(limit))
            return folder
        except OSError:  # not ours to make (no root, or v2 without the pids controller): the next, or none
            with contextlib.suppress(OSError):
                os.rmdir(folder)
    return None


def why_no_process_limit():
    """'' if the number of processes is limited here; else why not."""
    cgroup = pids_cgroup(f'grade-{os.getpid()}-probe', 1)
    if cgroup:
        remove_cgroup(cgroup)
        return ''
    return 'no process limit: no pids cgroup may be made here, and root is exempt from RLIMIT_NPROC' \
        if os.geteuid() == 0 else ''


def run(command, folder, limits, slot, env, sandboxed, hidden=()):
    """`command` run in `folder`, under the limits, in bubblewrap if `sandboxed` (with the folders of
    `hidden` out of sight), in slot `slot` of the -j. Waits for it, at most limits.submission_seconds,
    then kills every process it left. Its output goes to folder/output.txt."""
    cgroup = pids_cgroup(f'grade-{os.getpid()}-{slot}', limits.processes)

    def fence():  # in the child, before it runs the command
        import resource
        if cgroup:
            with open(os.path.join(cgroup, 'cgroup.procs'), 'w') as f:
                f.write(str(os.getpid()))
        else:  # counts every process of the user: those it has, and the limit
            resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes + len(processes_of(os.getuid())),) * 2)
        for which, value in ((resource.RLIMIT_AS, limits.memory_bytes), (resource.RLIMIT_FSIZE, limits.output_bytes),
                             (resource.RLIMIT_CORE, 0)):
            resource.setrlimit(which, (value, value))

    try:
        with open(os.path.join(folder, OUTPUT), 'wb') as output:
            child = subprocess.Popen([*(bubblewrap(folder, slot, hidden) if sandboxed else []), '/bin/sh', '-c', '"$@"; exit $?',
                                      'warden', *command], cwd=folder, env=env, stdin=subprocess.DEVNULL, stdout=output,
                                     stderr=subprocess.STDOUT, preexec_fn=fence, start_new_session=True)
            try:
                status, stopped = child.wait(timeout=limits.submission_seconds), ''
            except subprocess.TimeoutExpired:
                status, stopped = None, 'time'
            finally:
                kill_all(child.pid, cgroup)
                status = child.wait() if status is None else status
    finally:
        remove_cgroup(cgroup)
    return Ran(status, stopped, tail(os.path.join(folder, OUTPUT)))


def kill_all(group, cgroup):
    """Every process of the submission: its process group, and every process of its cgroup (one
    that left the group with setsid, say)."""
    for _ in range(200):
        left = {pid for pid in processes_of(None) if pgid(pid) == group}
        if cgroup:
            with open(os.path.join(cgroup, 'cgroup.procs')) as f:
                left |= {int(pid) for pid in f.read().split()} & set(processes_of(None))
        if not left:
            return
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.05)


def remove_cgroup(cgroup):
    """The slot's cgroup, once the kernel has let go of its last process (a zombie's parent may take a moment)."""
    for _ in range(100):
        if not cgroup or not os.path.isdir(cgroup):
            return
        try:
            os.rmdir(cgroup)
        except OSError:
            time.sleep(0.05)


def processes_of(uid):
    """The pids of the live processes whose real uid is `uid`; with None, of every live process. A
    zombie has ended, and waits only for its parent to read its status."""
    pids = []
    for name in os.listdir('/proc'):
        if name.isdigit():
            try:
                with open(f'/proc/{name}/status') as f:
                    status = dict(line.split(':', 1) for line in f if ':' in line)
            except OSError:
                continue
            if not status.get('State', 'Z').strip().startswith('Z') and (uid is None or int(status['Uid'].split()[0]) == uid):
                pids.append(int(name))
    return pids


def pgid(pid):
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def tail(path, size=4000):
    """The end of a file, as text."""
    with open(path, 'rb') as f:
        f.seek(max(0, os.path.getsize(path) - size))
        return f.read().decode(errors='replace')
