"""A pytest plugin that writes what a test run did as JSON lines: the tests collected, with the
exercises each is marked with and where it stands, and each test's outcome, a line as it ends.

    python -m pytest -p course.recorder --record FILE [--test-timeout SECONDS] ...

The grade reads FILE back (course/grade.py) as data that it parses and checks, never as code. A
line is written, and flushed, as each test ends, so that a run killed half-way (a time limit, a
crash) still tells which tests had passed. With --test-timeout, a test that runs past it fails,
with that reason, and the run goes on with the next; a test that needs an exercise whose own test
ran past it fails at once: an infinite loop costs its exercise one time limit, not one a test.
"""
import json
import signal

import pytest


class TestTimeout(BaseException):
    """A test ran past --test-timeout. Not an Exception, so that `except Exception:` in the code
    under test does not swallow it."""


def pytest_addoption(parser):
    parser.addoption('--record', help='file for JSON lines of the tests collected and their outcomes')
    parser.addoption('--test-timeout', type=float, default=0, help='seconds a test may run (default: 0, no limit)')


def pytest_configure(config):
    if config.getoption('record'):
        config.pluginmanager.register(Recorder(config.getoption('record')), 'course-recorder-file')


class Recorder:
    def __init__(self, path):
        self.file = open(path, 'a', buffering=1)  # line-buffered: each line is on disk as it is written

    def write(self, line):
        self.file.write(json.dumps(line) + '\n')

    def pytest_collection_finish(self, session):
        for item in session.items:
            path, line, _ = item.location
            skipped_here = any(mark.name == 'skip' or (mark.name == 'skipif' and mark.args and mark.args[0] is True)
                               for mark in item.iter_markers())  # by its own marks, on this machine: a CUDA test here
            self.write({'collected': item.nodeid, 'file': path, 'line': line + 1, 'skipped_here': skipped_here,
                        'exercises': [name for mark in item.iter_markers('exercise') for name in mark.args]})

    def pytest_collectreport(self, report):
        """A line for a test file that cannot be collected (a chapter it imports does not import)."""
        if report.failed:
            crash = getattr(report.longrepr, 'reprcrash', None)
            message = crash.message if crash else (str(report.longrepr).strip().splitlines() or [''])[-1]
            self.write({'test': report.nodeid, 'when': 'collect', 'outcome': 'failed', 'message': message[:2000]})

    def pytest_runtest_logreport(self, report):
        """A line for each phase (setup, call, teardown) that failed or skipped, and for each call that passed."""
        if report.passed and report.when != 'call':
            return
        crash = getattr(report.longrepr, 'reprcrash', None) if report.failed else None
        message = crash.message if crash else str(report.longrepr or '').strip().splitlines()[-1:] if report.failed else ''
        self.write({'test': report.nodeid, 'when': report.when, 'outcome': report.outcome,
                    'message': (message if isinstance(message, str) else ''.join(message))[:2000]})

    def pytest_unconfigure(self, config):
        self.file.close()


# The exercises whose own test (marked with it alone) ran past its time limit: the next tests that
# need one of them fail at once, for that reason, rather than each costing the time limit again.
LOOPED = set()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """The test's setup, call and teardown under one alarm of --test-timeout seconds: SIGALRM raises
    TestTimeout in whatever Python code runs then."""
    seconds = item.config.getoption('test_timeout')
    if not seconds:
        yield
        return
    needs = [name for mark in item.iter_markers('exercise') for name in mark.args]

    def expired(signum, frame):
        if len(needs) == 1:
            LOOPED.add(needs[0])
        raise TestTimeout(f'the test ran past its time limit of {seconds:g} s')
    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def pytest_runtest_setup(item):
    looped = sorted(LOOPED & {name for mark in item.iter_markers('exercise') for name in mark.args})
    if looped:
        raise TestTimeout(f'not run: {looped[0]} ran past the time limit in a test of its own')
