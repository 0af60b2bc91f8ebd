"""The grade of a copy of the handout, exercise by exercise, from the tests of its record.

    python -m course.grade          a table: each exercise, its tests passed, its points (make grade)
    python -m course.grade --json   the same rows as JSON

The rows are the record's (course/exercises.json, which `make handout` writes; in the instructor's
project, made on the spot): every exercise keeps its row, number and points whatever the student
wrote where its solution goes. An exercise's points are its points times the share of its own
tests that passed, those that need it alone. A test that needs several exercises (a whole run,
say) counts in none of their points; each of their rows shows it under "with others", and it
passes once they are all done. A hidden test is not in the student's copy: it counts when the
instructor grades the class (course/classroom.py), and the student is told only how many passed.

What the tests did comes back as JSON lines (course/recorder.py) that this module parses and
checks, line by line, as data: never code, never a pickle.
"""
import argparse
import json
import os
import stat
import subprocess
import sys
import tempfile

from course import handout

# What a test of the record that did not report says: not in this copy, or the run stopped before it.
NOT_RUN = 'did not run'
MAX_OUTCOMES = 64 * 2 ** 20  # bytes of the recorder's file that are read: a line a test, of 2,000 characters at most
# pytest's options for a grading run: the recorder, the tests that grade, and a test file that does
# not import (it imports a chapter with a syntax error) costs its own tests only, not every test's.
PYTEST = ['-q', '-p', 'course.recorder', '-p', 'no:cacheprovider', '--continue-on-collection-errors', '-m', handout.TIERS]


def record_of(root):
    """The record of the handout in `root`, as written by `make handout`; in the instructor's
    project, which has none, the one a handout of it would get."""
    path = os.path.join(root, handout.RECORD)
    if not os.path.exists(path):
        return handout.record(root)
    with open(path) as f:
        return json.load(f)


def run_tests(root):
    """The tests of `root` that grade, run with the recorder in a process of their own: what outcomes() reads."""
    with tempfile.TemporaryDirectory(prefix='grade-') as tmp:
        lines = os.path.join(tmp, 'outcomes.jsonl')
        subprocess.run([sys.executable, '-m', 'pytest', *PYTEST, '--record', lines, '--test-timeout', '60', 'tests'],
                       cwd=root, capture_output=True)  # an infinite loop costs a minute, and its test
        return outcomes(lines)


def outcomes(path):
    """{test id: (passed, message)} from the recorder's JSON lines in `path`, for each test that ran:
    one that failed in its setup, call or teardown did not pass, and its message is its first
    failure's. One that its own marks skip on this machine (a CUDA test without a GPU) says nothing
    of the exercise: (None, 'skipped'). Any other skip, which the code under test may have asked
    for (pytest.skip), did not pass. A line that is not what the recorder writes is ignored. Read
    from a regular file only, MAX_OUTCOMES bytes at most."""
    results, skipped_here = {}, set()
    try:
        with open(path, 'rb') as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return {}
            text = f.read(MAX_OUTCOMES).decode(errors='replace')
    except OSError:
        return {}
    for line in text.splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict) and isinstance(item.get('collected'), str) and item.get('skipped_here') is True:
            skipped_here.add(item['collected'])
        if not (isinstance(item, dict) and isinstance(item.get('test'), str)
                and item.get('outcome') in ('passed', 'failed', 'skipped')):
            continue
        test, before = item['test'], results.get(item['test'])
        if item['outcome'] == 'failed' and (before is None or before[0] is not False):
            results[test] = (False, str(item.get('message') or 'failed')[:2000])  # its first failure
        elif item['outcome'] == 'passed' and before is None:
            results[test] = (True, '')
        elif item['outcome'] == 'skipped' and before is None:
            results[test] = (None, 'skipped') if test in skipped_here else (False, 'skipped, though nothing here asks to skip it')
    return results


def rows(the_record, results, hidden_ran, not_run=NOT_RUN, shared_ran=True):
    """A row per exercise of the record: its public and hidden own tests passed out of their totals,
    the tests it shares with other exercises, the first failing public test and its message, and its
    points. A test of the record with no result failed with `not_run`. Without hidden_ran (the
    student's own make grade), hidden tests are not counted, and the points come from the public ones.
    Without shared_ran (a class graded apart, course/apart.py, which runs only the tests that count),
    the tests shared with other exercises have no result: None."""
    def result(test):  # its own, or its file's when the file could not be collected
        return results.get(test['id']) or results.get(test['id'].split('::')[0]) or (False, not_run)
    counts = [t for t in the_record['tests'] if result(t)[0] is not None]  # a skipped test says nothing
    graded = []
    for e in the_record['exercises']:
        own = [t for t in counts if t['exercises'] == [e['name']]]
        public, hidden = [t for t in own if not t['hidden']], [t for t in own if t['hidden']]
        shared = [t for t in counts if e['name'] in t['exercises'] and len(t['exercises']) > 1 and not t['hidden']]
        passed = lambda tests: sum(result(t)[0] for t in tests)
        counted = public + hidden if hidden_ran else public
        failing = next((t for t in public if not result(t)[0]), None)
        graded.append({'exercise': e['number'], 'name': e['name'], 'chapter': e['chapter'],
                       'passed': passed(public), 'tests': len(public),
                       'hidden_passed': passed(hidden) if hidden_ran else None,
                       'hidden': max(len(hidden), e.get('hidden', 0)),  # a student's record has only their count
                       'with_others_passed': passed(shared) if shared_ran else None, 'with_others': len(shared),
                       'first_failure': failing and {'test': failing['id'], 'message': result(failing)[1]},
                       'points': round(e['points'] * passed(counted) / len(counted), 1) if counted else 0.0,
                       'out_of': e['points']})
    return graded


def table(rows):
    lines = ['| # | exercise | chapter | tests passed | hidden | with others | points |', '|---:|---|---|---:|---:|---:|---:|']
    for r in rows:
        hidden = '' if not r['hidden'] else f'{r["hidden_passed"]}/{r["hidden"]}' if r['hidden_passed'] is not None else \
            f'{r["hidden"]} at grading'
        lines.append(f'| {r["exercise"]} | {r["name"]} | {r["chapter"]} | {r["passed"]}/{r["tests"]} | {hidden} | '
                     f'{r["with_others_passed"]}/{r["with_others"]} | {r["points"]:g}/{r["out_of"]:g} |')
    lines.append(f'| | total | | | | | {sum(r["points"] for r in rows):g}/{sum(r["out_of"] for r in rows):g} |')
    return '\n'.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description="This copy's grade, exercise by exercise, from its tests (make grade).")
    parser.add_argument('--json', action='store_true', help='the rows as JSON')
    args = parser.parse_args(argv)
    graded = rows(record_of(handout.HERE), run_tests(handout.HERE), hidden_ran=False)
    print(json.dumps(graded, indent=1) if args.json else table(graded))
    return 0


if __name__ == '__main__':
    sys.exit(main())
