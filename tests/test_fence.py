"""course/fence.py promises that a student's code, run in the worker, costs that submission only and
sees nothing it need not: a fork bomb meets its process limit, an allocation its memory limit, a
flood of output its size limit, a full /tmp its size; a segfault is how the worker ended; a stop
kills every process it left, one that left its group too; and in bubblewrap it has no network,
runs as a user of its own (not root), writes nothing outside its /tmp and sees none of /root,
/home, /etc, the tests, the project or another student. Each runs real code in the real worker."""
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest
import torch

from course import fence, wire
from conftest import ROOT

# The fence is the instructor's machinery: a handout (it has the record) grades nothing, and leaves it be.
pytestmark = pytest.mark.skipif(os.path.exists(os.path.join(ROOT, 'course', 'exercises.json')),
                                reason='a handout: the fence is the instructor\'s, for grading a class')
BUBBLEWRAP = pytest.mark.skipif(bool(fence.why_no_bubblewrap()),
                                reason=f'{fence.why_no_bubblewrap()}: Debian\'s bubblewrap package (.ci/run installs it)')


def unfenced_python_runs():
    """Whether the worker's Python runs as the worker's user without bubblewrap: as root, an
    unprivileged user must be able to reach it (a Python under /root, as pyenv's, it cannot)."""
    if os.geteuid() != 0:
        return True
    tried = subprocess.run(['setpriv', f'--reuid={fence.FIRST_UID}', f'--regid={fence.FIRST_UID}', '--clear-groups',
                            sys.executable, '-c', 'import torch'], capture_output=True)
    return tried.returncode == 0


UNFENCED = pytest.mark.skipif(not unfenced_python_runs(), reason='as root, the worker runs as an unprivileged user, '
                              'who cannot run this Python (is it under /root?): grading needs bubblewrap here')
SANDBOXED = [pytest.param(False, marks=UNFENCED), pytest.param(True, marks=BUBBLEWRAP)]


class Ran:
    def __init__(self, reply, printed, ended):
        self.reply, self.printed, self.ended = reply, printed, ended


def call(tmp_path, code, sandboxed, wait=60, **limits):
    """The function attack() of a chapter stats.py holding `code`, called in a fenced worker: its
    reply (or the exception reading it), what it printed, and how the worker ended ('' if alive)."""
    work = tmp_path / 'work'  # a link to a folder of /tmp's own: unfenced, the worker reaches it by its path
    os.symlink(tempfile.mkdtemp(prefix='fence-test-'), work)
    (tmp_path / 'chapters').mkdir()
    (tmp_path / 'chapters' / 'stats.py').write_text('def attack():\n' + textwrap.indent(textwrap.dedent(code), '    '))
    fence.prepare(str(work), {'stats.py': str(tmp_path / 'chapters' / 'stats.py')}, 0)
    process = fence.start_worker(str(work), fence.Limits()._replace(**limits)._asdict(), 0, sandboxed)
    try:
        wire.write(process.stdin, {'call': 'stats.attack', 'args': [], 'kwargs': {}, 'rng': torch.get_rng_state()})
        if select.select([process.stdout], [], [], wait)[0]:  # an answer, or the worker's end
            try:
                reply = wire.read(process.stdout)
            except (EOFError, wire.Broken) as e:
                reply = e
        else:
            reply = None  # still at it
        status = process.poll()
        if status is None and isinstance(reply, (EOFError, wire.Broken)):  # it closed its pipe as it ended, on a busy machine not yet
            try:
                status = process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
    finally:
        fence.stop_worker(process)
        printed = (work / 'printed.txt').read_text(errors='replace')
        shutil.rmtree(os.path.realpath(work))
    return Ran(reply, printed, fence.ended(status) if status is not None else '')


@pytest.mark.parametrize('sandboxed', SANDBOXED)
def test_a_fork_bomb_meets_its_process_limit(tmp_path, sandboxed):
    ran = call(tmp_path, '''
        import os, time
        n = 0
        try:
            for _ in range(1000):
                if os.fork() == 0:
                    time.sleep(30); os._exit(0)
                n += 1
        except OSError:
            return n
    ''', sandboxed, processes=40)
    assert isinstance(ran.reply, dict) and 0 < ran.reply['result'] < 40, (ran.reply, ran.printed)


@pytest.mark.parametrize('sandboxed', SANDBOXED)
def test_a_stopped_worker_leaves_no_process_one_that_left_its_group_too(tmp_path, sandboxed):
    """A loop that never answers, with a child that called setsid: the stop kills both."""
    marker = 'fence-test-%d' % os.getpid()
    ran = call(tmp_path, f'''
        import subprocess, sys
        subprocess.Popen(["/bin/sh", "-c", "sleep 600; : {marker}"], start_new_session=True)
        while True:
            pass
    ''', sandboxed, wait=2)
    assert ran.reply is None and ran.ended == ''  # it was still looping when stopped
    time.sleep(0.5)
    left = subprocess.run(['pgrep', '-f', marker], capture_output=True, text=True).stdout.split()
    assert not left, left


@pytest.mark.parametrize('sandboxed', SANDBOXED)
def test_output_past_its_limit_fails_the_call_and_is_cut(tmp_path, sandboxed):
    ran = call(tmp_path, '''
        import sys
        for _ in range(100):
            sys.stdout.write("x" * 2 ** 20)
            sys.stdout.flush()
    ''', sandboxed, output_bytes=2 ** 20)
    assert ran.reply['raised'] == 'OSError' and 'File too large' in ran.reply['message'], ran.reply
    assert len(ran.printed) == 2 ** 20


@pytest.mark.parametrize('sandboxed', SANDBOXED)
def test_memory_past_its_limit_is_a_memory_error(tmp_path, sandboxed):
    ran = call(tmp_path, 'x = bytearray(64 * 2 ** 30)', sandboxed)
    assert ran.reply['raised'] == 'MemoryError', ran.reply


@pytest.mark.parametrize('sandboxed', SANDBOXED)
def test_a_segfault_is_how_the_worker_ended(tmp_path, sandboxed):
    ran = call(tmp_path, 'import ctypes\nctypes.string_at(0)', sandboxed)
    assert isinstance(ran.reply, EOFError) and ran.ended == 'crashed: segmentation fault', (ran.reply, ran.ended)


def memory_cgroup():
    """Whether the grader may give a slot a memory cgroup here (root, and cgroup v1's memory
    hierarchy or v2's memory controller)."""
    made = fence.cgroups(f'grade-probe-{os.getpid()}', fence.Limits())
    for group in made:
        fence.remove_cgroup(group)
    return any('memory' in group or os.path.exists(os.path.join(group, 'memory.max')) for group in made)


@pytest.mark.skipif(not memory_cgroup(), reason='no memory cgroup may be made here: the rlimit alone caps each process')
def test_the_slot_s_memory_in_all_is_capped_not_each_process_s_alone(tmp_path):
    """Four children of 1.5 GB each, each within the address space a process may have: together
    past the slot's 6 GB, and the kernel kills some of them (SIGKILL), not the machine's memory. Each
    holds its memory until all four have theirs or one was killed (then the others are stopped, SIGTERM):
    on a busy machine, one that let go after a fixed time could be gone before the last had allocated."""
    ran = call(tmp_path, '''
        import os, signal, time
        allocated, said = os.pipe()
        os.set_blocking(allocated, False)
        children = []
        for _ in range(4):
            child = os.fork()
            if child == 0:
                hog = b'x' * (3 * 2 ** 29)
                os.write(said, b'.')
                signal.pause()
            children.append(child)
        ended, told = {}, b''
        while not ended and len(told) < 4:
            time.sleep(0.05)
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid:
                ended[pid] = status
            try:
                told += os.read(allocated, 4)
            except BlockingIOError:
                pass
        for child in children:
            if child not in ended:
                os.kill(child, signal.SIGTERM)
                ended[child] = os.waitpid(child, 0)[1]
        return [os.waitstatus_to_exitcode(ended[child]) for child in children]
    ''', not fence.why_no_bubblewrap())
    assert -9 in ran.reply['result'], ran.reply


@BUBBLEWRAP
def test_a_full_tmp_is_full_at_its_size(tmp_path):
    ran = call(tmp_path, '''
        import os
        written = 0
        try:
            with open("/tmp/fill", "wb") as f:
                for _ in range(100):
                    f.write(b"x" * 2 ** 20); f.flush(); written += 1
        except OSError as e:
            return written, str(e)
    ''', True, tmp_bytes=8 * 2 ** 20)
    written, why = ran.reply['result']
    assert written <= 8 and 'No space left' in why, ran.reply


@BUBBLEWRAP
def test_in_bubblewrap_it_sees_only_what_python_needs_and_its_chapters(tmp_path):
    """No network (a server on this machine's loopback is not reached); as root, a user of its own;
    nothing of /root, /home, /etc, the project or its tests; /usr read-only; its chapters read-only."""
    server = socket.socket()
    server.bind(('127.0.0.1', 0))
    server.listen()
    ran = call(tmp_path, f'''
        import os, socket
        seen = {{}}
        try:
            socket.create_connection(("127.0.0.1", {server.getsockname()[1]}), timeout=2); seen["network"] = "reached"
        except OSError as e:
            seen["network"] = str(e)
        seen["uid"] = os.getuid()
        seen["top"] = sorted(os.listdir("/"))
        for path in ("/root/.bashrc", "/etc/shadow", "/etc/passwd", "/home", {ROOT + '/tests/conftest.py'!r}, {ROOT!r}):
            seen[path] = os.path.exists(path)
        for path in ("/usr/evil", os.path.join(os.path.dirname(__file__), "evil.py")):
            try:
                open(path, "w"); seen[path] = "written"
            except OSError as e:
                seen[path] = "read-only"
        return seen
    ''', True)
    server.close()
    seen = ran.reply['result']
    assert seen['network'] != 'reached', seen
    assert seen['uid'] == (fence.FIRST_UID if os.geteuid() == 0 else os.getuid())
    assert not any(seen[p] for p in ('/root/.bashrc', '/etc/shadow', '/etc/passwd', '/home', ROOT + '/tests/conftest.py')), seen
    assert not seen[ROOT] or os.path.realpath(sys.prefix).startswith(ROOT), seen  # the project only where .venv is
    assert set(seen['top']) <= {'usr', 'bin', 'lib', 'lib32', 'lib64', 'sbin', 'proc', 'dev', 'tmp', 'grade',
                                *{os.path.realpath(p).split('/')[1] for p in (sys.prefix, sys.base_prefix)}}, seen['top']
    assert [v for k, v in seen.items() if k.endswith('evil.py') or k == '/usr/evil'] == ['read-only', 'read-only']


@BUBBLEWRAP
@pytest.mark.skipif(sys.prefix == sys.base_prefix, reason='the tests\' Python is not a virtual environment')
def test_a_venv_that_lives_in_tmp_starts_the_worker_though_the_sandbox_has_a_tmp_of_its_own(tmp_path):
    """A .venv that is a link into /tmp, as a clone standing in /tmp has: the grader's Python's
    folders are bound where they really are, after the sandbox's own /tmp, and the worker starts and
    answers. (The venv is a copy of the tests' own, made of hard links, in /tmp.)"""
    venv = tempfile.mkdtemp(prefix='venv-', dir='/tmp')
    try:
        copied = subprocess.run(['cp', '-al', f'{sys.prefix}/.', venv], capture_output=True, text=True)
        if copied.returncode:
            pytest.skip(f'no hard links from {sys.prefix} into /tmp: {copied.stderr.strip()}')
        os.symlink(venv, tmp_path / '.venv')
        ran = subprocess.run([str(tmp_path / '.venv' / 'bin' / 'python'), '-c', textwrap.dedent(f'''
            import sys, tempfile
            sys.path.insert(0, {ROOT!r})
            from course import fence, wire
            work = tempfile.mkdtemp()
            fence.prepare(work, {{}}, 0)
            worker = fence.start_worker(work, fence.Limits()._asdict(), 0, True)
            wire.write(worker.stdin, {{'ping': True}})
            print(sys.prefix, wire.read(worker.stdout))
            fence.stop_worker(worker)
            ''')], capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(venv)
    assert ran.returncode == 0 and ran.stdout.split()[0] == str(tmp_path / '.venv'), ran.stderr
    assert f"{{'torch': '{torch.__version__}'}}" in ran.stdout


def test_without_bubblewrap_the_fence_says_why_not():
    """Its one line, for the gradebook: '' where bubblewrap works, else why not."""
    why = fence.why_no_bubblewrap()
    found = subprocess.run(['sh', '-c', 'command -v bwrap'], capture_output=True).returncode == 0
    assert (why == 'bubblewrap is not installed') == (not found)
    assert why == '' or why.startswith('bubblewrap')
