"""Grading a class: each student's submission against the instructor's tests, hidden ones included,
fenced, into a gradebook an LMS imports and a feedback file per student.

    make grade-class SUBMISSIONS=DIR OUT=grades.csv           one submission at a time
    make -j4 grade-class SUBMISSIONS=DIR OUT=grades.csv TIMEOUT=30   four at once, 30 s a test
    python -m course.classroom DIR --out grades.csv [--jobs N] [--test-timeout S] [--memory-gb G] ...

DIR holds one folder, .zip or .tar.gz per student, named by the student's id (course/submissions.py).
Each is graded as otter-grader and nbgrader do it: a fresh copy of the instructor's handout, with
the instructor's tests (the hidden ones too), conftest.py and Makefile, gets only the student's
chapters that hold exercises; anything else the student sent (a tests/ folder, a conftest.py, a
sitecustomize.py, a pytest.ini, a .pth file, another chapter) is left out, and the feedback lists
it. The tests run fenced (course/fence.py), and their outcomes come back as JSON lines that are
parsed and checked (course/grade.py), never run.

What comes out:
    grades.csv         a row per submission: its id, a column per exercise headed by its name, the
                       total, and notes (why a row is short: a refused archive, a time limit...). Its
                       second row, "Points Possible", gives each maximum, as Canvas imports it.
    feedback/ID.txt    beside it: per exercise, the public tests passed, the first failing one and
                       its message, the hidden tests passed as a count; the limits; what was ignored.
"""
import argparse
import concurrent.futures
import csv
import os
import queue
import re
import shutil
import signal
import sys
import tempfile
from typing import NamedTuple

from course import fence, grade, handout, submissions


class Graded(NamedTuple):
    student: str
    rows: list      # course/grade.py's rows; [] for a submission refused whole
    problems: list  # what went wrong, each in a few words: the notes of its gradebook row
    ignored: list   # the files it sent that the grade leaves out


# What no chapter of the course needs, and code that sets out to forge its grade would: each one
# found in a submitted chapter is a note of its row, for the instructor to read that chapter.
TO_SCREEN = ('pytest', 'os._exit', 'outcomes.jsonl', 'exercises.json', '--record', 'sys.modules', 'builtins', '/proc/',
             'getppid', '__import__', 'ctypes', 'subprocess', 'importlib')


def grade_one(student, path, source, the_record, limits, slot, sandboxed, hidden=()):
    """One submission, graded in a folder of its own under the fence, in slot `slot` of the -j, with
    the folders of `hidden` (the instructor's project) out of its sight where it is sandboxed."""
    work = tempfile.mkdtemp(prefix=f'grade-{submissions.safe_id(student)}-')
    try:
        wanted = sorted({e['chapter'] for e in the_record['exercises']})
        try:
            taken, ignored = submissions.take(path, wanted, os.path.join(work, 'sent'))
        except submissions.Refused as e:
            return Graded(student, [], [f'refused: {e}'], [])
        except Exception as e:  # an archive of a kind nobody foresaw: that student's row, not the class's
            return Graded(student, [], [f'refused: it will not unpack ({type(e).__name__}: {e})'], [])
        copy = os.path.join(work, 'copy')
        shutil.copytree(source, copy)
        for chapter, sent in taken.items():
            shutil.copyfile(sent, os.path.join(copy, chapter))
        ran = fence.run([sys.executable, '-E', '-s', '-B', '-m', 'pytest', *grade.PYTEST, '--record', 'outcomes.jsonl',
                         '--test-timeout', str(limits.test_seconds), '--basetemp', os.path.join(copy, 'pytest-tmp'), 'tests'],
                        copy, limits, slot, environment(copy), sandboxed, hidden)
        stopped = why_stopped(ran, limits)
        results = grade.outcomes(os.path.join(copy, 'outcomes.jsonl'))
        rows = grade.rows(the_record, results, hidden_ran=True, not_run=stopped or grade.NOT_RUN)
        problems = [stopped] if stopped else []
        problems += limited(results, limits)
        if not taken:
            problems.append(f'none of the chapters {", ".join(wanted)} was found')
        screened = [f'{chapter} mentions {word}' for chapter, sent in sorted(taken.items())
                    for word in TO_SCREEN if word in open(sent, errors='replace').read()]
        if screened:
            problems.append('to read by hand: ' + ', '.join(screened))
        return Graded(student, rows, problems, ignored)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def environment(folder):
    """What the tests see of the environment: nothing of the grader's but PATH."""
    return {'PATH': os.environ.get('PATH', '/usr/bin:/bin'), 'HOME': folder, 'TMPDIR': folder, 'USER': 'student',
            'LOGNAME': 'student', 'OMP_NUM_THREADS': '1', 'MPLBACKEND': 'Agg',
            'TORCHINDUCTOR_CACHE_DIR': os.path.join(folder, 'inductor')}


def why_stopped(ran, limits):
    """Why the tests of a submission ended before they all reported, in a few words; '' if they ended.
    The tests run under a shell, which exits with 128 + the signal that ended them."""
    if ran.stopped == 'time':
        return f'stopped at the time limit of {limits.submission_seconds:g} s for the whole submission'
    if ran.status in (0, 1):  # pytest: all passed; some failed
        return ''
    if ran.status < 0:
        return f'the process running its tests was killed (signal {-ran.status}), by the tests themselves'
    if ran.status > 128:
        return {signal.SIGKILL: 'killed (SIGKILL) before its tests ended: by its own code, or out of memory',
                signal.SIGSEGV: 'crashed: segmentation fault', signal.SIGABRT: 'crashed: aborted',
                signal.SIGXFSZ: f'stopped: its output passed the limit of {limits.output_bytes / 2 ** 20:g} MB'}.get(
            ran.status - 128, f'ended by signal {ran.status - 128}')
    if 'MemoryError' in ran.output:
        return f'ran out of its memory limit of {limits.memory_bytes / 2 ** 30:g} GB before the tests ended'
    lines = [line for line in ran.output.strip().splitlines() if line.strip()]
    return f'the tests ended with status {ran.status}' + (f': {lines[-1][:200]}' if lines else '')


def limited(results, limits):
    """The tests that met a limit, counted: those past their time limit, those out of memory."""
    timed = sum('TestTimeout: the test ran past' in message for passed, message in results.values() if passed is False)
    memory = sum(('MemoryError' in message or "can't allocate memory" in message)
                 for passed, message in results.values() if passed is False)
    output = sum('File too large' in message for passed, message in results.values() if passed is False)
    notes = []
    if output:
        notes.append(f'{output} test{"s" * (output > 1)} wrote past the output limit of {limits.output_bytes / 2 ** 20:g} MB')
    if timed:
        notes.append(f'{timed} test{"s" * (timed > 1)} ran past the time limit of {limits.test_seconds:g} s')
    if memory:
        notes.append(f'{memory} test{"s" * (memory > 1)} ran out of the memory limit of {limits.memory_bytes / 2 ** 30:g} GB')
    return notes


def grade_class(folder, out, jobs, limits, source_root=handout.HERE, bubblewrap=True):
    """Every submission in `folder`, `jobs` at a time, in bubblewrap where it works (and `bubblewrap`);
    writes the gradebook `out` and the feedback folder beside it. Returns the Gradeds, by id."""
    the_record = grade.record_of(source_root)
    with tempfile.TemporaryDirectory(prefix='grade-class-') as tmp:
        source = os.path.join(tmp, 'source')
        feedback = os.path.join(os.path.dirname(os.path.abspath(out)), 'feedback')
        handout.make(source, root=source_root, hidden=True, written=the_record,  # the instructor's copy, blank
                     leave_out=(folder, out, feedback))
        probe = os.path.join(tmp, 'probe')
        os.makedirs(probe)
        no_sandbox = fence.why_no_bubblewrap(probe) if bubblewrap else 'bubblewrap not asked for (--no-bubblewrap)'
        slots = queue.Queue()
        for slot in range(jobs):
            slots.put(slot)

        def one(entry):
            slot = slots.get()
            try:
                graded = grade_one(*entry, source, the_record, limits, slot, not no_sandbox, hidden=(source_root,))
                print(f'{graded.student}: {round(sum(r["points"] for r in graded.rows), 1):g} points'
                      + (f'; {"; ".join(graded.problems)}' if graded.problems else ''), flush=True)
                return graded
            finally:
                slots.put(slot)
        with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
            graded = list(pool.map(one, submissions.found(folder)))
    network = '; '.join(filter(None, [f'not in a sandbox: network on, files outside its folder writable ({no_sandbox})'
                                      if no_sandbox else '', fence.why_no_process_limit()]))
    write_gradebook(out, the_record, graded, network)
    os.makedirs(feedback, exist_ok=True)
    for g in graded:
        with open(os.path.join(feedback, f'{submissions.safe_id(g.student)}.txt'), 'w') as f:
            f.write(feedback_text(g, limits, network))
    return graded


def write_gradebook(out, the_record, graded, network):
    """grades.csv: ID, a column per exercise, total, notes; a Points Possible row; a row per submission."""
    exercises = the_record['exercises']
    with open(out, 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['ID', *[e['name'] for e in exercises], 'total', 'notes'])
        writer.writerow(['Points Possible', *[f'{e["points"]:g}' for e in exercises],
                         f'{sum(e["points"] for e in exercises):g}', ''])
        for g in graded:
            points = [r['points'] for r in g.rows] or [0] * len(exercises)
            notes = '; '.join(g.problems + ([network] if network else []))
            writer.writerow([g.student, *[f'{p:g}' for p in points], f'{round(sum(points), 1):g}', notes])


def feedback_text(g, limits, network):
    """What a student reads of the grade: each exercise, and what went wrong."""
    lines = [f'Grade of {g.student}', '']
    if not g.rows:
        return '\n'.join(lines + [f'Not graded: {"; ".join(g.problems)}', ''])
    for r in g.rows:
        lines += about(r)
    lines += ['', f'Total: {round(sum(r["points"] for r in g.rows), 1):g} of {sum(r["out_of"] for r in g.rows):g}']
    if g.problems:
        lines += ['', 'Problems: ' + '; '.join(g.problems)]
    if g.ignored:
        lines += ['', 'Ignored, since the grade takes only the chapters that hold exercises: ' + ', '.join(grouped(g.ignored))]
    lines += ['', f'Limits: {limits.described()}' + (f'; {network}' if network else ''), '']
    return '\n'.join(lines)


def about(r):
    """What a student reads of one exercise's row: its points, its tests, the first that failed."""
    hidden = f', hidden tests passed: {r["hidden_passed"]} of {r["hidden"]}' if r['hidden'] else ''
    lines = [f'{r["exercise"]:2d}. {r["name"]} ({r["chapter"]}): {r["points"]:g} of {r["out_of"]:g} points; '
             f'its tests passed: {r["passed"]} of {r["tests"]}{hidden}']
    if r['first_failure']:
        lines += [f'    first to fail: {r["first_failure"]["test"]}',
                  '    ' + re.sub(r'\s+', ' ', r['first_failure']['message'])[:600]]
    return lines


def grouped(files):
    """Files by their top folder: ['tests/ (3 files)', 'conftest.py', ...], the files that could change how
    tests run first, as a student who sent them should see."""
    tops = {}
    for f in files:
        top = f.split(os.sep)[0] + (os.sep if os.sep in f else '')
        tops[top] = tops.get(top, 0) + 1
    named = [f'{top} ({n} file{"s" * (n > 1)})' if top.endswith(os.sep) else top for top, n in tops.items()]
    first = lambda name: not re.match(r'(tests|conftest\.py|sitecustomize\.py|pytest\.ini|.*\.pth|setup\.cfg|tox\.ini|pyproject)', name)
    return sorted(named, key=lambda name: (first(name), name))


def jobs_from(flag):
    """Submissions at once: N, or make's -jN as it passes it in MAKEFLAGS ('-j4'; '-j' for every core; '' for 1)."""
    if not flag:
        return 1
    number = flag.removeprefix('-j')
    return int(number) if number.isdigit() and int(number) > 0 else os.cpu_count() or 1


def main(argv=None):
    parser = argparse.ArgumentParser(description='Grade a class: each submission, fenced, against the instructor\'s '
                                                 'tests; a gradebook and a feedback file per student.')
    parser.add_argument('submissions', help='folder of submissions: a folder, .zip or .tar.gz per student, named by id')
    parser.add_argument('--out', required=True, help='the gradebook, a CSV file; feedback/ goes beside it')
    parser.add_argument('--jobs', default='', help='submissions at once: N, or make\'s -jN (default: 1)')
    defaults = fence.Limits()
    parser.add_argument('--test-timeout', type=float, default=defaults.test_seconds,
                        help='seconds a test may run (make\'s TIMEOUT) (default: %(default)s)')
    parser.add_argument('--submission-timeout', type=float, default=defaults.submission_seconds,
                        help='seconds a whole submission may run (default: %(default)s)')
    parser.add_argument('--memory-gb', type=float, default=defaults.memory_bytes / 2 ** 30,
                        help='address space of each process, in GB (default: %(default)s)')
    parser.add_argument('--processes', type=int, default=defaults.processes, help='processes (default: %(default)s)')
    parser.add_argument('--output-mb', type=float, default=defaults.output_bytes / 2 ** 20,
                        help='MB of output and of any file it writes (default: %(default)s)')
    parser.add_argument('--no-bubblewrap', action='store_true', help='grade without bubblewrap even where it works')
    args = parser.parse_args(argv)
    if not os.path.isdir(args.submissions):
        parser.error(f'{args.submissions} is not a folder of submissions')
    limits = fence.Limits(args.test_timeout, args.submission_timeout, int(args.memory_gb * 2 ** 30), args.processes,
                          int(args.output_mb * 2 ** 20))
    graded = grade_class(args.submissions, args.out, jobs_from(args.jobs), limits, bubblewrap=not args.no_bubblewrap)
    print(f'{args.out}: {len(graded)} submissions graded; feedback in '
          f'{os.path.join(os.path.dirname(os.path.abspath(args.out)), "feedback")}/')
    return 0


if __name__ == '__main__':
    sys.exit(main())
