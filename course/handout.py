"""The course's handout: the chapters with their key functions left for the student, the tests
without the hidden ones, and a record of what was cut, which the grade reads (course/grade.py).

    python -m course.handout OUT      the student's copy in OUT (make handout OUT=...)

An exercise is a block of a chapter between the lines `# BEGIN SOLUTION` and `# END SOLUTION`,
the markers of nbgrader and otter-grader. It is named after the function it is in, and numbered
in the reading order of the chapters (bookkeeping.CHAPTERS). In the handout each block becomes

    raise NotImplementedError('exercise 6: cosine_lr in schedule.py')

and all else stays: docstrings, signatures, comments outside the blocks, and the tests. An
instructor chooses the exercises by adding or removing markers; nothing else names them.

The tests grade, as in minitorch: a test is marked with the exercises it needs,
@pytest.mark.exercise('cosine_lr'), and uses trusted references (torch, torchvision, a small
network) for everything else, so that a blank in one exercise fails only that exercise's tests.
Tests between `# BEGIN HIDDEN TESTS` and `# END HIDDEN TESTS` in a test file, nbgrader's markers,
are left out of the handout; they count when the instructor grades the class.

The handout records what it cut in course/exercises.json: each exercise's number, name, chapter,
points (course/course.toml gives an exercise other points than 10) and how many hidden tests it
has, and each public test that grades one, with the exercises it needs; the instructor's copy, to
grade with, records the hidden tests too, by name. The grade reads that record, not the
student's chapters: a solution, written as students write it, keeps its exercise's row.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from typing import NamedTuple

from bookkeeping import CHAPTERS, environment

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the project
BEGIN, END = '# BEGIN SOLUTION', '# END SOLUTION'
HIDDEN = '# BEGIN HIDDEN TESTS', '# END HIDDEN TESTS'
BLANK = re.compile(r"raise NotImplementedError\('exercise \d+: [\w.]+ in \w+\.py'\)")  # what a handout has instead
RECORD = os.path.join('course', 'exercises.json')  # in a handout: what it cut
POINTS = 10  # an exercise's, unless course/course.toml says otherwise
TIERS = 'exercise and not slow'  # the tests that grade: those marked with an exercise, of the quick tier
# What the handout leaves out: git's history, what a run, a test or Python makes, and the mutation
# check's list of bugs (tests/mutants.toml), whose bugs quote the solutions they break.
LEFT_OUT = {'.git', '.venv', 'data', 'runs', 'figures', '.gpus', '__pycache__', '.pytest_cache', 'mutants.toml'}  # and runs-*/


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


def make(out, keep=(), root=HERE, hidden=False, written=None, leave_out=()):
    """The handout in `out`: the project's files with every exercise's block replaced by a raise,
    but those named in `keep` (the tests put one back to check that it alone passes), the hidden
    tests cut from the tests unless `hidden` (the instructor's copy, to grade with), and the record
    (record(root), unless `written` gives it). Paths in `leave_out` (a class's submissions and
    grades, should they be kept in the project) are not copied."""
    if os.path.exists(out) and os.listdir(out):
        raise SystemExit(f'handout: error: {out} is not empty: name a new folder, or empty it first')
    written = written or record(root)
    away = {os.path.realpath(path) for path in leave_out}
    shutil.copytree(root, out, dirs_exist_ok=True, ignore=lambda folder, names: [
        n for n in names if n in LEFT_OUT or n.startswith('runs-') or os.path.realpath(os.path.join(folder, n)) in away])
    for chapter in CHAPTERS:
        lines = open(os.path.join(root, chapter)).read().splitlines(keepends=True)
        for exercise in reversed([e for e in exercises(root) if e.chapter == chapter and e.solved and e.name not in keep]):
            first, last = exercise.lines
            indent = lines[first][:len(lines[first]) - len(lines[first].lstrip())]
            lines[first:last + 1] = [f"{indent}raise NotImplementedError('exercise {exercise.number}: "
                                     f"{exercise.name} in {chapter}')\n"]
        with open(os.path.join(out, chapter), 'w') as f:
            f.writelines(lines)
    if not hidden:
        for name in os.listdir(os.path.join(root, 'tests')):
            if name.endswith('.py'):
                with open(os.path.join(out, 'tests', name), 'w') as f:
                    f.writelines(without_hidden(open(os.path.join(root, 'tests', name)).read().splitlines(keepends=True)))
    with open(os.path.join(out, RECORD), 'w') as f:
        json.dump(written if hidden else for_students(written), f, indent=1)


def for_students(written):
    """The record as the student's copy holds it: each exercise's hidden tests as a count, not by name."""
    hidden = lambda e: sum(t['hidden'] and t['exercises'] == [e['name']] for t in written['tests'])
    return {'exercises': [e | {'hidden': hidden(e)} for e in written['exercises']],
            'tests': [t for t in written['tests'] if not t['hidden']]}


def without_hidden(lines):
    """A test file's lines without its hidden blocks, markers included."""
    hidden = hidden_lines(lines)
    return [line for number, line in enumerate(lines, 1) if number not in hidden]


def hidden_lines(lines):
    """The numbers (1-based) of the lines of a test file within its hidden blocks, markers included."""
    numbers, inside = set(), False
    for number, line in enumerate(lines, 1):
        inside = inside or line.strip() == HIDDEN[0]
        if inside:
            numbers.add(number)
        inside = inside and line.strip() != HIDDEN[1]
    return numbers


def record(root=HERE):
    """What a handout of `root` cuts, as course/exercises.json holds it: {'exercises': [{number, name,
    chapter, points}], 'tests': [{id, exercises, hidden}]}, the tests those of the quick tier marked
    with an exercise, found by pytest's own collection; each hidden if it stands in a hidden block."""
    points = read_points(root)
    found = exercises(root)
    with tempfile.TemporaryDirectory() as tmp:
        lines = os.path.join(tmp, 'collected.jsonl')
        collected = subprocess.run([sys.executable, '-m', 'pytest', '--collect-only', '-q', '-p', 'course.recorder',
                                    '-p', 'no:cacheprovider', '--record', lines, '-m', TIERS, 'tests'],
                                   cwd=root, capture_output=True, text=True)
        if collected.returncode != 0:
            raise SystemExit(f'handout: error: the tests of {root} cannot be collected:\n{collected.stdout}{collected.stderr}')
        tests = [t for t in map(json.loads, open(lines)) if 'collected' in t]
    hidden = {path: hidden_lines(open(os.path.join(root, path)).read().splitlines()) for path in {t['file'] for t in tests}}
    return {'exercises': [{'number': e.number, 'name': e.name, 'chapter': e.chapter, 'points': points.get(e.name, POINTS)}
                          for e in found],
            'tests': [{'id': t['collected'], 'exercises': t['exercises'], 'hidden': t['line'] in hidden[t['file']]}
                      for t in tests]}


def read_points(root):
    """course/course.toml's [points]: {exercise name: points}, for those worth other than POINTS."""
    path = os.path.join(root, 'course', 'course.toml')
    try:
        with open(path, 'rb') as f:
            points = tomllib.load(f).get('points', {})
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise SystemExit(f'handout: error: {path}: {e}') from None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in points.values()):
        raise SystemExit(f'handout: error: {path}: [points] gives each exercise a number of points, 0 or more')
    return points


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    usage = 'usage: python -m course.handout OUT   (make handout OUT=...): a new folder for the handout'
    if argv in (['-h'], ['--help']):
        print(usage)
        return 0
    if len(argv) != 1 or argv[0].startswith('-'):  # a folder is never named by a flag
        raise SystemExit(usage)
    out = argv[0]
    why = environment.folder(out)  # made before any work, or why it cannot be, in one line
    if why:
        raise SystemExit(f'handout: error: OUT={out}: {why}')
    make(out)
    print(f'{out}: the handout, {len(exercises(out))} exercises to write; in it: make test-quick, make grade')
    return 0


if __name__ == '__main__':
    sys.exit(main())


