"""course/fence.py promises that a submission's code, run fenced, costs that submission only: a fork
bomb meets its process limit, a loop its wall clock (with every process it left killed, one that
left its group too), a flood of output its size limit, an allocation its memory limit; a segfault
is a status; killing its parent kills the warden, not the grader; and in bubblewrap, no network
and nothing written outside its folder. Each runs real code under the real fence."""
import os
import socket
import subprocess
import sys
import tempfile

import pytest

from course import fence

BUBBLEWRAP = pytest.mark.skipif(bool(fence.why_no_bubblewrap('/tmp')),
                                reason=f'{fence.why_no_bubblewrap("/tmp")}: Debian\'s bubblewrap package (.ci/run installs it)')
SANDBOXED = [False, pytest.param(True, marks=BUBBLEWRAP)]


def fenced(tmp_path, code, sandboxed, **limits):
    """`code` run by Python under the fence in a folder of its own; the Ran."""
    folder = tmp_path / 'folder'
    folder.mkdir(exist_ok=True)
    return fence.run([sys.executable, '-c', code], str(folder), fence.Limits()._replace(**limits), 0,
                     {'PATH': os.environ['PATH']}, sandboxed)


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not open(f'/proc/{pid}/status').read().count('State:\tZ')


@pytest.mark.skipif(bool(fence.why_no_process_limit()), reason=fence.why_no_process_limit() or 'limited')
@pytest.mark.parametrize('sandboxed', SANDBOXED)
def test_a_fork_bomb_meets_its_process_limit(tmp_path, sandboxed):
    ran = fenced(tmp_path, 'import os, time\nn = 0\ntry:\n    for _ in range(1000):\n        if os.fork() == 0:\n'
                           '            time.sleep(30); os._exit(0)\n        n += 1\nexcept OSError:\n    print("stopped at", n)\n',
                 sandboxed, processes=40)
    assert 'stopped at' in ran.output and int(ran.output.split()[-1]) < 40, ran.output


@pytest.mark.parametrize('sandboxed', SANDBOXED)
def test_the_wall_clock_kills_every_process_one_that_left_its_group_too(tmp_path, sandboxed):
    """A loop past the submission's time limit is stopped; a child that called setsid to leave the
    process group (without bubblewrap, its pids cgroup finds it) is killed with it."""
    pids = tmp_path / 'folder' / 'pids'
    code = ('import os, subprocess, sys, time\n'
            'child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)\n'
            f'open({str(pids)!r}, "w").write(str(child.pid))\nwhile True:\n    pass\n')
    ran = fenced(tmp_path, code, sandboxed, submission_seconds=3)
    assert ran.stopped == 'time'
    if not sandboxed:  # in bubblewrap, its pids are its namespace's
        assert fence.why_no_process_limit() or not alive(int(pids.read_text()))


@pytest.mark.parametrize('sandboxed', SANDBOXED)
def test_output_past_its_limit_stops_it(tmp_path, sandboxed):
    ran = fenced(tmp_path, 'import sys\nfor _ in range(64):\n    sys.stdout.write("x" * 2 ** 20)\n', sandboxed,
                 output_bytes=2 ** 20)
    assert ran.status != 0  # Python ignores SIGXFSZ: its write fails (EFBIG), and so does its exit
    assert os.path.getsize(tmp_path / 'folder' / fence.OUTPUT) == 2 ** 20


@pytest.mark.parametrize('sandboxed', SANDBOXED)
def test_memory_past_its_limit_is_a_memory_error(tmp_path, sandboxed):
    ran = fenced(tmp_path, 'x = bytearray(64 * 2 ** 30)', sandboxed, memory_bytes=2 ** 30)
    assert ran.status == 1 and 'MemoryError' in ran.output


@pytest.mark.parametrize('sandboxed', SANDBOXED)
def test_a_segfault_is_its_status(tmp_path, sandboxed):
    ran = fenced(tmp_path, 'import ctypes\nctypes.string_at(0)', sandboxed)
    assert ran.status == 128 + 11  # SIGSEGV, told by the warden


@pytest.mark.parametrize('sandboxed', SANDBOXED)
def test_killing_its_parent_kills_the_warden_not_the_grader(tmp_path, sandboxed):
    ran = fenced(tmp_path, 'import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nimport time; time.sleep(30)',
                 sandboxed, submission_seconds=20)
    assert ran.stopped == '' and ran.status not in (0, 1)  # ended at once, and this process is here to say so


@BUBBLEWRAP
def test_in_bubblewrap_no_network_and_nothing_written_outside_its_folder(tmp_path):
    """A server on this machine's loopback that it cannot reach, a file beside its folder it cannot
    write, and its own folder, which it can."""
    server = socket.socket()
    server.bind(('127.0.0.1', 0))
    server.listen()  # a connection from this machine would succeed, accepted or not
    outside = tmp_path / 'instructor.txt'  # /tmp is the sandbox's own: this is the grader's folder
    outside.write_text('grades')
    beside = tempfile.NamedTemporaryFile('w', dir='/var/tmp', suffix='.txt', delete=False)  # outside /tmp
    beside.write('grades')
    beside.close()
    code = ('import socket\ntry:\n    socket.create_connection(("127.0.0.1", %d), timeout=2); print("reached")\n'
            'except OSError as e:\n    print("no network:", e)\n'
            'open(%r, "w").write("0")\n'
            'try:\n    open(%r, "w").write("0")\nexcept OSError as e:\n    print("read-only:", e)\n'
            'open("mine.txt", "w").write("ok")\n') % (server.getsockname()[1], str(outside), beside.name)
    ran = fenced(tmp_path, code, True)
    server.close()
    assert 'no network:' in ran.output and 'read-only:' in ran.output and 'reached' not in ran.output, ran.output
    assert outside.read_text() == open(beside.name).read() == 'grades'
    assert (tmp_path / 'folder' / 'mine.txt').read_text() == 'ok'
    os.remove(beside.name)


def test_without_bubblewrap_the_fence_says_why_not(tmp_path):
    """Its one line, for the gradebook: '' where bubblewrap works, else why not."""
    why = fence.why_no_bubblewrap(str(tmp_path))
    found = subprocess.run(['sh', '-c', 'command -v bwrap'], capture_output=True).returncode == 0
    assert (why == 'bubblewrap is not installed') == (not found)
    assert why == '' or why.startswith('bubblewrap')
