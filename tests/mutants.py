"""The mutation check: plausible bugs, each made alone in a scratch copy of the project, and the
quick tier run against it. A passing suite says nothing of the bugs it would let through; this
says how many of a list of them it does.

    make mutants                                    every bug of tests/mutants.toml, two at a time
    python tests/mutants.py [--jobs N] [NAME ...]   those named (all if none), N at a time

Mutation testing (DeMillo, Lipton and Sayward 1978, "Hints on test data selection") makes small
changes to a program and asks whether its tests notice. Tools such as mutmut generate the changes
by the thousand; here they are a list written by hand (tests/mutants.toml): each a bug a careful
engineer could write, an off-by-one, a flag that never reaches the loop, a state that resume
forgot, and none a syntax error. For each, a copy of the project's files (those git tracks, and new
ones it does not ignore: no .venv, data or runs) gets the one change, and the quick tier runs in
it, stopping at its first failure; the test files the bug names run first, then the rest. The
tier leaves out tests/test_mutants.py, which holds the list to the code, and so fails in any copy
with a bug made. Each bug gets a line, in the list's order, and the count comes last:

    caught   the quick tier failed with the bug in: the line names the first test that failed
    missed   the quick tier passed with the bug in
    moved    its text is not in its file exactly once: the code changed since the bug was written,
             and the list must follow it. Never counted as caught.

Before the bugs, the copy as it is runs the quick tier too (the control): if it fails, no verdict
means anything, and the check says so and stops. A test that fails with a bug in is run again,
alone: if it passes then, it failed by chance (a test of timings on a busy machine), and the tier
goes on without it, which the bug's line says. Exit status 0 whatever the verdicts, since this is
a report; 1 for a list that is not one, a name not in it, or a control that fails; Ctrl-C stops
every tier that runs, and their copies go.
"""
import argparse
import concurrent.futures
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from typing import NamedTuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIST = os.path.join(ROOT, 'tests', 'mutants.toml')
QUICK = ['-q', '-x', '-m', 'not slow', '-p', 'no:cacheprovider']  # make test-quick's tier, to its first failure
ITSELF = 'tests/test_mutants.py'  # left out of the tier: it finds each bug's text changed, in a copy with the bug made
TIER_SECONDS = 1200  # a tier still running after this has hung: the bug made it loop
FIELDS = {'name': str, 'file': str, 'find': str, 'replace': str, 'bug': str, 'tests': list}


class Mutant(NamedTuple):
    name: str
    file: str      # the project's file it changes, from the project's folder
    find: str      # text that occurs exactly once in that file
    replace: str   # what the bug puts there instead
    bug: str       # what it stands for, in a few words
    tests: tuple   # test files to run first


class ListError(Exception):
    """The list is not a list of mutants; the message says which entry, and what is wrong."""


def read_list(path=LIST):
    """The mutants of the list at `path`, in its order; ListError if it is not such a list."""
    try:
        with open(path, 'rb') as f:
            entries = tomllib.load(f).get('mutant')
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ListError(f'{path}: {e}') from None
    if not isinstance(entries, list) or not entries:
        raise ListError(f'{path}: it has no [[mutant]]')
    mutants = []
    for number, entry in enumerate(entries, 1):
        where = f'{path}: mutant {number} ({entry.get("name", "no name")!r})'
        odd = sorted(set(entry) - set(FIELDS))
        missing = [key for key in FIELDS if key not in entry and key != 'tests']
        wrong = [key for key, kind in FIELDS.items() if key in entry and not isinstance(entry[key], kind)]
        if odd or missing or wrong:
            raise ListError(f'{where}: ' + '; '.join([f'no field {key}' for key in odd] + [f'it needs {key}' for key in missing]
                                                     + [f'{key} must be a {FIELDS[key].__name__}' for key in wrong]))
        if not re.fullmatch(r'[a-z0-9][a-z0-9-]*', entry['name']) or entry['name'] in (m.name for m in mutants):
            raise ListError(f'{where}: a name of its own is needed, in lower-case letters, digits and -')
        if not entry['find'] or entry['find'] == entry['replace'] or not all(isinstance(t, str) for t in entry.get('tests', [])):
            raise ListError(f'{where}: find must be text that replace changes, and tests a list of test files')
        mutants.append(Mutant(**{**entry, 'tests': tuple(entry.get('tests', ()))}))
    return mutants


def moved(mutant, root=ROOT):
    """'' if the mutant can be made in the project at `root`; else why not, in a few words: its
    file is gone, or its text is not there exactly once (the code moved), or a test file it names is gone."""
    path = os.path.join(root, mutant.file)
    if not os.path.isfile(path):
        return f'{mutant.file} is not there'
    found = open(path).read().count(mutant.find)
    if found != 1:
        return f'its text is in {mutant.file} {found} times, not once'
    gone = [test for test in mutant.tests if not os.path.isfile(os.path.join(root, test))]
    return f'{gone[0]} is not there' if gone else ''


# ---------------------------------------------------------------------------------------------
# One mutant: a scratch copy, the one change, and the quick tier against it.


class Verdict(NamedTuple):
    mutant: Mutant   # None for the control, the copy as it is
    verdict: str     # 'caught', 'missed' or 'moved'
    why: str         # the test that caught it, or why it moved
    seconds: float
    by_chance: tuple = ()  # tests that failed, then passed alone, and were left out


def judge(mutant):
    """The verdict of the quick tier on the project with the mutant in (the control: None)."""
    start = time.perf_counter()
    why = moved(mutant) if mutant else ''
    if why:
        return Verdict(mutant, 'moved', f'{why}: the code changed; update {os.path.relpath(LIST, ROOT)}', 0.0)
    with tempfile.TemporaryDirectory(prefix=f'mutant-{mutant.name if mutant else "control"}-') as work:
        project = os.path.join(work, 'project')
        copy_project(project)
        if mutant:
            path = os.path.join(project, mutant.file)
            text = open(path).read()
            with open(path, 'w') as f:
                f.write(text.replace(mutant.find, mutant.replace))
        first = list(mutant.tests) if mutant else []
        rest = ['tests', *[f'--ignore={test}' for test in [ITSELF, *first]]]
        by_chance = []
        for targets in ([first] if first else []) + [rest]:
            failed = first_failure(project, os.path.join(work, 'tmp'), targets, by_chance)
            if failed:
                return Verdict(mutant, 'caught', failed, time.perf_counter() - start, tuple(by_chance))
    return Verdict(mutant, 'missed', 'the quick tier passed', time.perf_counter() - start, tuple(by_chance))


def copy_project(into):
    """The project's files into `into`: those git tracks, as they are now on disk, and new ones it
    does not ignore; not .git, .venv, data, runs or anything else .gitignore names."""
    listed = subprocess.run(['git', '-C', ROOT, 'ls-files', '-z', '--cached', '--others', '--exclude-standard'],
                            capture_output=True, text=True, check=True).stdout.split('\0')
    for name in filter(None, listed):
        source = os.path.join(ROOT, name)
        if os.path.isfile(source):  # a tracked file deleted in the working tree is not there
            os.makedirs(os.path.dirname(os.path.join(into, name)), exist_ok=True)
            shutil.copy2(source, os.path.join(into, name))


def first_failure(project, basetemp, targets, by_chance):
    """The first test of the quick tier's `targets` that fails in `project`, and fails again alone;
    '' if none does. A test that passes alone is added to `by_chance` and left out."""
    while True:
        status, failed = pytest(project, basetemp, [*targets, *[f'--deselect={test}' for test in by_chance]])
        if status in (0, 5):  # 5: no test to run there (a file of slow tests only)
            return ''
        if status is None:
            return f'the quick tier ran past {TIER_SECONDS} s'
        if not failed or '::' not in failed:  # a file that does not import, or pytest's own error
            return failed or f'pytest exited with status {status}'
        if pytest(project, basetemp, [failed])[0] != 0:
            return failed
        by_chance.append(failed)


def pytest(project, basetemp, arguments):
    """The quick tier's pytest in `project`, as a shell would start it, whatever make started this
    with: (its exit status, or None if it ran past TIER_SECONDS; the first test it names as failed).
    It runs in a session of its own, so that one kill stops it and every process its tests started."""
    env = {k: v for k, v in os.environ.items() if k not in ('MAKEFLAGS', 'MFLAGS', 'MAKELEVEL', 'MAKEOVERRIDES')}
    command = [sys.executable, '-m', 'pytest', *QUICK, f'--basetemp={basetemp}', *arguments]
    with RUNNING_LOCK:
        if STOPPED.is_set():
            return -signal.SIGINT, ''
        process = subprocess.Popen(command, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   env=env, start_new_session=True)
        RUNNING.add(process)
    try:
        output = process.communicate(timeout=TIER_SECONDS)[0]
    except subprocess.TimeoutExpired:
        kill(process)
        process.communicate()
        return None, ''
    finally:
        with RUNNING_LOCK:
            RUNNING.discard(process)
    failed = re.search(r'^(?:FAILED|ERROR) (.+?)(?: - |$)', output, re.M)  # the summary's line: FAILED id - message
    return process.returncode, failed.group(1) if failed else ''


# The tiers running now, for Ctrl-C to stop; once it has, no other starts.
RUNNING, RUNNING_LOCK, STOPPED = set(), threading.Lock(), threading.Event()


def kill(process):
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def stop_every_tier():
    with RUNNING_LOCK:
        STOPPED.set()
        for process in RUNNING:
            kill(process)


# ---------------------------------------------------------------------------------------------
# The whole list, a line a mutant.


def line(v):
    """A verdict as its line: the verdict, the mutant, its file, and the test that caught it or why not."""
    chance = f' (left out as failing by chance: {", ".join(v.by_chance)})' if v.by_chance else ''
    took = f', {v.seconds:.0f} s' if v.verdict != 'moved' else ''
    return f'{v.verdict:6s}  {v.mutant.name} ({v.mutant.file}): {v.why}{took}{chance}'


def clock(seconds):
    minutes, seconds = divmod(round(seconds), 60)
    return f'{minutes} min {seconds} s' if minutes else f'{seconds} s'


def check(mutants, jobs):
    """The control, then every mutant, `jobs` at a time, each line printed in the list's order as
    soon as those before it are done. Returns the exit status."""
    start = time.perf_counter()
    print(f'{len(mutants)} mutants of {os.path.relpath(LIST, ROOT)}, {jobs} at a time, each against the quick tier '
          f'({sys.executable} -m pytest {" ".join(QUICK)})', flush=True)
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        try:
            control = pool.submit(judge, None)
            running = [pool.submit(judge, mutant) for mutant in mutants]
            first = control.result()
            if first.verdict != 'missed':
                pool.shutdown(cancel_futures=True)
                print(f'control: the quick tier fails on the project as it is, at {first.why}: no verdict would mean '
                      f'anything; make test-quick shows why', flush=True)
                return 1
            print(f'control: the quick tier passed on the project as it is, {first.seconds:.0f} s'
                  + (f' (left out as failing by chance: {", ".join(first.by_chance)})' if first.by_chance else ''), flush=True)
            verdicts = []
            for future in running:
                verdicts.append(future.result())
                print(line(verdicts[-1]), flush=True)
        except KeyboardInterrupt:  # Ctrl-C, or make's SIGTERM: the tiers running are stopped, the rest never start
            pool.shutdown(cancel_futures=True, wait=False)
            stop_every_tier()
            print('\nstopped', file=sys.stderr)
            return 130
    counts = {name: sum(v.verdict == name for v in verdicts) for name in ('caught', 'missed', 'moved')}
    print(f'{len(verdicts)} mutants: {counts["caught"]} caught, {counts["missed"]} missed, {counts["moved"]} moved; '
          f'{clock(time.perf_counter() - start)} ({jobs} at a time, on {os.cpu_count()} cores)')
    for v in verdicts:
        if v.verdict == 'missed':
            print(f'  missed: {v.mutant.name}: {v.mutant.bug}')
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description='Each plausible bug of tests/mutants.toml, alone in a scratch copy '
                                                 'of the project, against the quick tier (make mutants).')
    parser.add_argument('names', nargs='*', metavar='NAME', help='the mutants to make (default: all)')
    parser.add_argument('--jobs', type=int, default=2, help='mutants at once (default: %(default)s)')
    parser.add_argument('--list', default=LIST, help='the list of mutants (default: tests/mutants.toml)')
    args = parser.parse_args(argv)
    try:
        mutants = read_list(args.list)
    except ListError as e:
        sys.exit(f'mutants.py: error: {e}')
    unknown = [name for name in args.names if name not in {m.name for m in mutants}]
    if unknown:
        sys.exit(f'mutants.py: error: no mutant {unknown[0]!r} in {args.list}')
    return check([m for m in mutants if not args.names or m.name in args.names], max(1, args.jobs))


if __name__ == '__main__':
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # kill's, as Ctrl-C
    sys.exit(main())
