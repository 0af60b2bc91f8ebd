"""The course's handout: the chapters with their key functions left for the student, and a grade,
exercise by exercise, from the project's own tests.

    python -m course.handout make OUT      the student's copy in OUT (make handout OUT=...)
    python -m course.handout grade         a table: each exercise, its tests passed, its points (make grade)
    python -m course.handout grade --json  the same, for a course's autograder

An exercise is a block of a chapter between the lines `# BEGIN SOLUTION` and `# END SOLUTION`,
the markers of nbgrader and otter-grader. It is named after the function it is in, and numbered
in the reading order of the chapters (bookkeeping.CHAPTERS). In the handout each block becomes

    raise NotImplementedError('exercise 6: cosine_lr in schedule.py')

and all else stays: docstrings, signatures, comments outside the blocks, and the tests. An
instructor chooses the exercises by adding or removing markers; nothing else names them.

The tests grade, as in minitorch: a test is marked with the exercises it needs,
@pytest.mark.exercise('cosine_lr'), and uses trusted references (torch, torchvision, a small
network) for everything else, so that a blank in one exercise fails only that exercise's tests.
An exercise's points come from its own tests, those that need it alone; a test that needs several
(a whole run, say) is counted in each of their rows, under "with others", and passes once they
are all done.
"""
import argparse
import json
import os
import re
import shutil
import sys
from typing import NamedTuple

from bookkeeping import CHAPTERS

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the project
BEGIN, END = '# BEGIN SOLUTION', '# END SOLUTION'
BLANK = re.compile(r"raise NotImplementedError\('exercise \d+: [\w.]+ in \w+\.py'\)")  # what a handout has instead
POINTS = 10  # each exercise's, given in proportion to its own tests passed
# What the handout leaves out: git's history, and what a run, a test or Python makes.
LEFT_OUT = {'.git', '.venv', 'data', 'runs', 'figures', '.gpus', '__pycache__', '.pytest_cache'}  # and runs-*/


class Exercise(NamedTuple):
    number: int
    name: str      # the function the block is in: 'cosine_lr', 'BasicBlock.forward'
    chapter: str   # its file
    lines: tuple   # the block's first and last line, 0-based: its markers, or the handout's raise
    solved: bool   # its solution is there (the project, or one put back), not the raise


def exercises(root=HERE):
    """The exercises of the chapters in `root`, in reading order: each block between the markers,
    and in a handout each raise that stands for one."""
    found = []
    for chapter in CHAPTERS:
        lines = open(os.path.join(root, chapter)).read().splitlines()
        start = None
        for i, line in enumerate(lines):
            if line.strip() == BEGIN:
                start = i
            elif line.strip() == END or BLANK.fullmatch(line.strip()):
                solved = line.strip() == END
                found.append(Exercise(len(found) + 1, enclosing(lines, start if solved else i), chapter,
                                      (start if solved else i, i), solved))
    return found


def enclosing(lines, i):
    """The qualified name of the function that line i is in: 'BasicBlock.forward'."""
    names, indent = [], len(lines[i]) - len(lines[i].lstrip())
    for line in reversed(lines[:i]):
        match = re.match(r'(\s*)(?:def|class) (\w+)', line)
        if match and len(match.group(1)) < indent:
            names.insert(0, match.group(2))
            indent = len(match.group(1))
    return '.'.join(names)


def make(out, keep=(), root=HERE):
    """The handout in `out`: the project's files with every exercise's block replaced by a raise,
    but those named in `keep` (the tests put one back to check that it alone passes)."""
    if os.path.exists(out) and os.listdir(out):
        raise SystemExit(f'handout.py: error: {out} is not empty: name a new folder, or empty it first')
    shutil.copytree(root, out, dirs_exist_ok=True,
                    ignore=lambda folder, names: [n for n in names if n in LEFT_OUT or n.startswith('runs-')])
    for chapter in CHAPTERS:
        lines = open(os.path.join(root, chapter)).read().splitlines(keepends=True)
        for exercise in reversed([e for e in exercises(root) if e.chapter == chapter and e.solved and e.name not in keep]):
            first, last = exercise.lines
            indent = lines[first][:len(lines[first]) - len(lines[first].lstrip())]
            lines[first:last + 1] = [f"{indent}raise NotImplementedError('exercise {exercise.number}: "
                                     f"{exercise.name} in {chapter}')\n"]
        with open(os.path.join(out, chapter), 'w') as f:
            f.writelines(lines)


# ---------------------------------------------------------------------------------------------
# Grading: the tests marked per exercise, run once; their outcomes, by exercise.


class Recorder:
    """A pytest plugin: for each test run, the exercises it needs (its marks) and whether it passed.
    A skipped test (a CUDA test on a CPU, say) is left out: it says nothing of the exercise."""

    def __init__(self):
        self.tests = {}

    def pytest_collection_finish(self, session):
        for item in session.items:
            needs = [name for mark in item.iter_markers('exercise') for name in mark.args]
            self.tests[item.nodeid] = {'exercises': needs, 'passed': True}

    def pytest_runtest_logreport(self, report):
        if report.skipped:
            self.tests.pop(report.nodeid, None)
        elif report.failed and report.nodeid in self.tests:  # in its setup (a fixture), its call or its teardown
            blank = re.search(r"NotImplementedError: exercise \d+: ([\w.]+) in", report.longreprtext)
            self.tests[report.nodeid] |= {'passed': False, 'blank': blank and blank.group(1)}  # the blank it met


def results(root=HERE, tiers='not slow'):
    """Run the tests marked with an exercise, quietly; {nodeid: {'exercises', 'passed'}}."""
    import pytest  # here, not above: only grading needs it
    recorder = Recorder()
    pytest.main(['-p', 'no:terminal', '-p', 'no:cacheprovider', '-m', f'exercise and {tiers}',
                 os.path.join(root, 'tests')], plugins=[recorder])
    return recorder.tests


def grade(tests, root=HERE):
    """Each exercise's row: its own tests passed out of their total, the tests it shares with
    other exercises passed out of theirs, and its points."""
    rows = []
    for e in exercises(root):
        own = [t['passed'] for t in tests.values() if t['exercises'] == [e.name]]
        shared = [t['passed'] for t in tests.values() if e.name in t['exercises'] and len(t['exercises']) > 1]
        points = POINTS * sum(own) / len(own) if own else 0.0
        rows.append({'exercise': e.number, 'name': e.name, 'chapter': e.chapter, 'passed': sum(own), 'tests': len(own),
                     'with_others_passed': sum(shared), 'with_others': len(shared), 'points': round(points, 1),
                     'out_of': POINTS})
    return rows


def table(rows):
    lines = ['| # | exercise | chapter | tests passed | with others | points |', '|---:|---|---|---:|---:|---:|']
    for r in rows:
        lines.append(f'| {r["exercise"]} | {r["name"]} | {r["chapter"]} | {r["passed"]}/{r["tests"]} | '
                     f'{r["with_others_passed"]}/{r["with_others"]} | {r["points"]:g}/{r["out_of"]} |')
    total = sum(r['points'] for r in rows)
    lines.append(f'| | total | | | | {total:g}/{POINTS * len(rows)} |')
    return '\n'.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description='The handout of the course, and its grade.')
    commands = parser.add_subparsers(dest='command', required=True)
    making = commands.add_parser('make', help='write the student\'s copy, exercises left blank')
    making.add_argument('out', help='a new folder for it')
    grading = commands.add_parser('grade', help='run the tests of each exercise and print its points')
    grading.add_argument('--json', action='store_true', help='the rows as JSON, for a course\'s autograder')
    args = parser.parse_args(argv)
    if args.command == 'make':
        make(args.out)
        print(f'{args.out}: the handout, {len(exercises(args.out))} exercises to write; in it: make test-quick, make grade')
        return 0
    rows = grade(results())
    print(json.dumps(rows, indent=1) if args.json else table(rows))
    return 0


if __name__ == '__main__':
    sys.exit(main())
