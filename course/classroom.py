"""Grading a class: each student's submission against the instructor's tests, hidden ones included,
into a gradebook an LMS imports and a feedback file per student.

    make grade-class SUBMISSIONS=DIR OUT=grades.csv           one submission at a time
    make -j4 grade-class SUBMISSIONS=DIR OUT=grades.csv TIMEOUT=30   four at once, 30 s a test
    python -m course.classroom DIR --out grades.csv [--jobs N] [--test-timeout S] [--memory-gb G] ...

DIR holds one folder, .zip or .tar.gz per student, named by the student's id (course/submissions.py).
From each, only the chapters that hold exercises are taken; anything else the student sent (a
tests/ folder, a conftest.py, a sitecustomize.py, a .pth file, another chapter) is left out, and
the feedback lists it. The checks are the instructor's tests, hidden ones included, run in the
instructor's blank copy by a process that never imports a student's chapter: the student's
functions run in a worker, fenced (course/apart.py, course/fence.py), and what they return comes
back as plain data. The tests' outcomes come back as JSON lines that are parsed and checked
(course/grade.py), never run. Only the tests that count are run: those of one exercise each.

Whatever a submission does costs its own row: a step of its grading that fails is that row's note,
and the gradebook and the feedback are written as each submission is done. The grader refuses to
start, in one line, where the worker cannot run at all.

What comes out:
    grades.csv         a row per submission: its id, a column per exercise headed by its name, the
                       total, and notes (why a row is short: a refused archive, a time limit...). Its
                       second row, "Points Possible", gives each maximum, as Canvas imports it. A
                       cell a spreadsheet would read as a formula (=, +, -, @ first) starts with '.
    feedback/ID.txt    beside it: per exercise, the public tests passed, the first failing one and
                       its message, the hidden tests passed as a count; the limits; what was ignored.
"""
import argparse
import concurrent.futures
import csv
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from typing import NamedTuple

from course import fence, grade, handout, submissions, wire
from bookkeeping import CHAPTERS, environment

POINTS_ROW = 'Points Possible'  # Canvas's name for the row of maxima


class Graded(NamedTuple):
    student: str
    rows: list      # course/grade.py's rows; [] for a submission refused whole
    problems: list  # what went wrong, each in a few words: the notes of its gradebook row
    ignored: list   # the files it sent that the grade leaves out


def grade_one(student, path, source, the_record, limits, slot, sandboxed):
    """One submission, graded in a folder of its own: its chapters taken in, the worker's folder
    made (course/fence.py), the checks run in the instructor's copy `source`, and their outcomes read."""
    work = tempfile.mkdtemp(prefix=f'grade-{submissions.safe_id(student)}-')
    try:
        wanted = sorted({e['chapter'] for e in the_record['exercises']})
        try:
            taken, ignored = submissions.take(path, wanted, os.path.join(work, 'sent'))
        except submissions.Refused as e:
            return Graded(student, [], [f'refused: {e}'], [])
        chapters = {name: os.path.join(source, name) for name in [*CHAPTERS, 'bookkeeping']} | taken
        fence.prepare(os.path.join(work, 'worker'), chapters, slot)
        status, stopped = run_checks(source, work, limits, slot, sandboxed)
        results = grade.outcomes(os.path.join(work, 'checks', 'outcomes.jsonl'))
        stopped = stopped or (f'the checks ended with status {status}' if status not in (0, 1, 5) else '')
        rows = grade.rows(the_record, results, hidden_ran=True, not_run=stopped or grade.NOT_RUN, shared_ran=False)
        problems = [stopped] if stopped else []
        problems += limited(results, limits)
        if not taken:
            problems.append(f'none of the chapters {", ".join(wanted)} was found')
        return Graded(student, rows, problems, ignored)
    except Exception as e:  # a step that failed on this submission: its row, not the class's
        return Graded(student, [], [f'not graded: the grader failed on it ({type(e).__name__}: {str(e)[:200]})'], [])
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_checks(source, work, limits, slot, sandboxed):
    """The instructor's tests in `source`, in a process of their own that never imports the student's
    chapters (course/apart.py): the worker of work/worker runs them. Returns pytest's exit status,
    and 'time' if the whole submission's time limit stopped it, or ''. Outcomes in work/checks."""
    checks = os.path.join(work, 'checks')
    os.mkdir(checks, 0o700)
    fenced = {'limits': limits._asdict(), 'slot': slot, 'sandboxed': sandboxed}
    command = [sys.executable, '-B', '-m', 'pytest', *grade.PYTEST, '-p', 'course.apart', '--apart',
               os.path.join(work, 'worker'), '--apart-fence', json.dumps(fenced),
               '--record', os.path.join(checks, 'outcomes.jsonl'), '--test-timeout', str(limits.test_seconds),
               '--basetemp', os.path.join(checks, 'tmp'), '--rootdir', source, 'tests']
    env = os.environ | {'OMP_NUM_THREADS': '1', 'MPLBACKEND': 'Agg'}  # a core a submission: -j N at once
    with open(os.path.join(checks, 'output.txt'), 'wb') as output:
        process = subprocess.Popen(command, cwd=source, stdin=subprocess.DEVNULL, stdout=output,
                                   stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            return process.wait(timeout=limits.submission_seconds), ''
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # its worker dies with it (setpriv --pdeathsig)
            return process.wait(), f'stopped at the time limit of {limits.submission_seconds:g} s for the whole submission'
        finally:
            fence.clean_up(process.pid, slot)


def limited(results, limits):
    """The tests that met a limit, counted: those past their time limit, those out of memory, those
    whose output was too large, those that could start no process (a fork bomb), those that ended
    the worker (a segfault, os._exit)."""
    failed = [message for passed, message in results.values() if passed is False]
    counts = [(sum('TestTimeout: the test ran past' in m for m in failed), f'ran past the time limit of {limits.test_seconds:g} s'),
              (sum('MemoryError' in m for m in failed), f'ran out of the memory limit of {limits.memory_bytes / 2 ** 30:g} GB'),
              (sum('File too large' in m for m in failed), f'wrote past the output limit of {limits.output_bytes / 2 ** 20:g} MB'),
              (sum('BlockingIOError: [Errno 11]' in m for m in failed), f'met the limit of {limits.processes} processes'),
              (sum('WorkerLost: ' in m for m in failed), 'ended the process running the student\'s code')]
    return [f'{n} test{"s" * (n > 1)} {what}' for n, what in counts if n]


def grade_class(folder, out, jobs, limits, source_root=handout.HERE, bubblewrap=True):
    """Every submission in `folder`, `jobs` at a time, the worker in bubblewrap where it works (and
    `bubblewrap`); writes the gradebook `out`, a row as each submission is done, and the feedback
    folder beside it. Returns the Gradeds, by id. SystemExit, in one line, before anyone is graded,
    where the student's code cannot run."""
    out = os.path.abspath(out)
    feedback = os.path.join(os.path.dirname(out), 'feedback')
    the_record = grade.record_of(source_root)
    entries = submissions.found(folder)
    with tempfile.TemporaryDirectory(prefix='grade-class-') as tmp:
        source = os.path.join(tmp, 'source')
        handout.make(source, root=source_root, hidden=True, written=the_record,  # the instructor's copy, blank
                     leave_out=(folder, out, feedback))
        no_sandbox = fence.why_no_bubblewrap() if bubblewrap else 'bubblewrap not asked for (--no-bubblewrap)'
        cannot = why_worker_cannot_start(source, limits, not no_sandbox)
        if cannot:
            raise SystemExit(f'grade-class: error: the students\' code cannot run here: {cannot}')
        note = f'not in a sandbox ({no_sandbox}): {fence.unfenced()}' if no_sandbox else ''
        book = Gradebook(out, the_record, note, feedback, limits)
        slots = queue.Queue()
        for slot in range(jobs):
            slots.put(slot)

        def one(student, path):
            slot = slots.get()
            try:
                return grade_one(student, path, source, the_record, limits, slot, not no_sandbox)
            finally:
                slots.put(slot)
        graded = [Graded(student, [], [f'refused: {why}'], []) for student, why in refused_ids(entries)]
        for g in graded:
            book.add(g)
        refused = {g.student for g in graded}
        with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
            running = {pool.submit(one, *entry): entry[0] for entry in entries if entry[0] not in refused}
            for done in concurrent.futures.as_completed(running):
                try:
                    g = done.result()
                except Exception as e:  # grade_one catches all; a last guard, so the class goes on
                    g = Graded(running[done], [], [f'not graded: the grader failed on it ({type(e).__name__})'], [])
                book.add(g)
                graded.append(g)
                print(f'{g.student}: {round(sum(r["points"] for r in g.rows), 1):g} points'
                      + (f'; {"; ".join(g.problems)}' if g.problems else ''), flush=True)
        book.sort()
    return sorted(graded, key=lambda g: g.student)


def why_worker_cannot_start(source, limits, sandboxed):
    """'' if a worker starts with the handout's blank chapters and answers, fenced as the students'
    will be; else why not, in one line: what its Python said, or how it ended."""
    with tempfile.TemporaryDirectory(prefix='grade-probe-') as work:
        fence.prepare(work, {name: os.path.join(source, name) for name in [*CHAPTERS, 'bookkeeping']}, 0)
        process = fence.start_worker(work, limits._asdict(), 0, sandboxed)
        timer = threading.Timer(120, fence.stop_worker, [process])
        timer.start()
        try:
            wire.write(process.stdin, {'ping': True})
            answer = wire.read(process.stdout)
            return '' if isinstance(answer, dict) and 'torch' in answer else 'the worker answered what is not an answer'
        except (EOFError, OSError, wire.Broken):
            printed = open(os.path.join(work, 'printed.txt'), errors='replace').read()[-2000:].strip().splitlines()
            return printed[-1] if printed else f'the worker {fence.ended(process.wait())}'
        finally:
            timer.cancel()
            fence.stop_worker(process)


class Gradebook:
    """grades.csv, written as each submission is done: ID, a column per exercise, total, notes; a
    Points Possible row; a row per submission. sort() rewrites it in the order of the ids, so that
    it is the same whatever -j. Each submission's feedback file is written with its row."""

    def __init__(self, out, the_record, note, feedback, limits):
        self.out, self.the_record, self.note, self.feedback, self.limits = out, the_record, note, feedback, limits
        self.rows, self.lock = [], threading.Lock()
        exercises = the_record['exercises']
        self.head = [['ID', *[e['name'] for e in exercises], 'total', 'notes'],
                     [POINTS_ROW, *[f'{e["points"]:g}' for e in exercises], f'{sum(e["points"] for e in exercises):g}', '']]
        os.makedirs(feedback, exist_ok=True)
        self.write(self.head)

    def add(self, g):
        points = [r['points'] for r in g.rows] or [0] * len(self.the_record['exercises'])
        row = [g.student, *[f'{p:g}' for p in points], f'{round(sum(points), 1):g}',
               '; '.join(g.problems + ([self.note] if self.note else []))]
        with self.lock:
            self.rows.append(row)
            with open(self.out, 'a', newline='') as f:
                csv.writer(f).writerow(safe_cells(row))
            with open(os.path.join(self.feedback, f'{submissions.safe_id(g.student)}.txt'), 'w') as f:
                f.write(feedback_text(g, self.limits, self.note))

    def write(self, rows):
        with open(self.out + '.part', 'w', newline='') as f:
            csv.writer(f).writerows(safe_cells(row) for row in rows)
        os.replace(self.out + '.part', self.out)

    def sort(self):
        self.write(self.head + sorted(self.rows, key=lambda row: row[0]))


def refused_ids(entries):
    """[(id, why)] for the submissions whose id the gradebook cannot hold: the name of its points row,
    and two ids that are one once made safe, as a feedback file's name (a b, a_b) or as a cell (=a, '=a)."""
    refused = [(student, f'its id is the name of the gradebook\'s row of maxima') for student, _ in entries
               if student.strip().lower() == POINTS_ROW.lower()]
    for made_safe in (submissions.safe_id, lambda student: safe_cells([student])[0]):
        seen = {}
        for student, _ in entries:
            seen.setdefault(made_safe(student), []).append(student)
        refused += [(student, f'its id and {", ".join(repr(o) for o in same if o != student)} are one once made safe '
                              f'({made_safe(student)!r}): rename them') for same in seen.values() if len(same) > 1
                    for student in same]
    return sorted(dict(refused).items())


def safe_cells(row):
    """A row as a spreadsheet should show it: a cell that starts with =, +, -, @, a tab or a carriage
    return is prefixed with ', so that Excel and Sheets read it as text, not a formula (OWASP's
    advice on CSV injection). Numbers are left as they are."""
    return [f"'{cell}" if cell[:1] in ('=', '+', '-', '@', '\t', '\r') and not re.fullmatch(r'-?[\d.]+', cell) else cell
            for cell in row]


def write_gradebook(out, the_record, graded, network):
    """The gradebook of `graded`, whole, as grade_class leaves it (and its feedback beside it)."""
    book = Gradebook(out, the_record, network, os.path.join(os.path.dirname(os.path.abspath(out)), 'feedback'),
                     fence.Limits())
    for g in graded:
        book.add(g)
    book.sort()


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
                        help='memory of the student\'s code: each process\'s address space, and all of them (default: %(default)s)')
    parser.add_argument('--processes', type=int, default=defaults.processes, help='processes (default: %(default)s)')
    parser.add_argument('--output-mb', type=float, default=defaults.output_bytes / 2 ** 20,
                        help='MB of output and of any file it writes (default: %(default)s)')
    parser.add_argument('--tmp-mb', type=float, default=defaults.tmp_bytes / 2 ** 20,
                        help='MB of its /tmp, in bubblewrap (default: %(default)s)')
    parser.add_argument('--no-bubblewrap', action='store_true', help='grade without bubblewrap even where it works')
    args = parser.parse_args(argv)
    if not os.path.isdir(args.submissions):
        parser.exit(2, f'grade-class: error: {args.submissions} is not a folder of submissions\n')
    why = environment.folder(os.path.dirname(os.path.abspath(args.out)))  # before a class is graded, not after
    if why or os.path.isdir(args.out):
        parser.exit(2, f'grade-class: error: OUT={args.out}: {why or "is a folder, not a file"}\n')
    limits = fence.Limits(args.test_timeout, args.submission_timeout, int(args.memory_gb * 2 ** 30), args.processes,
                          int(args.output_mb * 2 ** 20), int(args.tmp_mb * 2 ** 20))
    graded = grade_class(args.submissions, args.out, jobs_from(args.jobs), limits, bubblewrap=not args.no_bubblewrap)
    print(f'{args.out}: {len(graded)} submissions graded; feedback in '
          f'{os.path.join(os.path.dirname(os.path.abspath(args.out)), "feedback")}/')
    return 0


if __name__ == '__main__':
    sys.exit(main())
