"""Locks that die with their process: one process per run folder, one run per GPU, one fetch of the data set.

flock(2) locks a file for as long as the process that took the lock keeps it open. When the
process ends, however it ends (kill -9, a node that reboots its jobs, a Slurm time limit), the
kernel closes its files and the lock is gone: no stale lock can outlive a run, and nothing has to
clean up after one. The holder writes its pid and host into the file, for whoever is refused.

On a shared file system, a lock holds across machines only if the file system passes flock to
its server: NFS does (Linux emulates flock with NFS's byte-range locks), Lustre only when mounted
with `-o flock`, and some others not at all. Where it does not, each machine sees only its own locks.
"""
import fcntl
import os
import socket
import time


def acquire(path, waiting=None):
    """Take the lock of the file at `path` (made if missing): returns the file descriptor that
    holds it, for release(). If another process holds it: None, having taken nothing; or, given
    `waiting`, that line, printed once, and the descriptor once the holder lets go."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # OSError if something else stands at path, a folder say
    for _ in range(10):  # someone only looking (holder()) holds it for microseconds; a run, for hours
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            time.sleep(0.05)
    else:
        if waiting is None:
            os.close(fd)
            return None
        print(waiting, flush=True)
        fcntl.flock(fd, fcntl.LOCK_EX)
    os.ftruncate(fd, 0)
    os.write(fd, f'{os.getpid()} {socket.gethostname()}\n'.encode())
    return fd


def release(fd):
    """Give the lock up: closing its file does it, as the end of the process would."""
    os.close(fd)


def holder(path):
    """'pid N on HOST' of the process that holds the lock at `path`, or None if no process does."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # granted only if nobody holds it
    except BlockingIOError:
        pid, _, host = os.read(fd, 256).decode(errors='replace').strip().partition(' ')
        return f'pid {pid} on {host}' if pid else 'another process'
    else:
        return None
    finally:
        os.close(fd)
