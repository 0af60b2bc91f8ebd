"""handout.py promises the course's handout: each exercise's block of a chapter, and nothing else,
replaced by a raise that names it; no solution left in the copy; a grade per exercise from the
project's own tests; and exercises graded each on its own: on the blank handout every exercise's
tests fail on its own blank and every other test passes, and putting one solution back passes
that exercise's tests. Once every exercise is solved, the handout trains."""
import ast
import concurrent.futures
import json
import os
import subprocess
import sys

import pytest

from course import handout
from conftest import ROOT, make_cifar

# In a handout the solutions are cut out, and with them what these tests check: the instructor's.
pytestmark = pytest.mark.skipif(not all(e.solved for e in handout.exercises()),
                                reason='a handout: its exercises\' solutions are cut out')

# The exercises the course asks for (the issue that made the handout), by the function each is in.
ASKED = ['BasicBlock.forward', 'balanced_split', 'channel_stats', 'sample_box', 'crop_flip', 'cosine_lr',
         'train_one_epoch', 'evaluate', 'mcnemar_p', 'welch']


def blocks(root, exercise):
    lines = open(os.path.join(root, exercise.chapter)).read().splitlines()
    first, last = exercise.lines
    return lines[first + 1:last]


def test_the_exercises_are_the_course_s_in_reading_order():
    found = handout.exercises()
    assert [e.name for e in found] == ASKED and [e.number for e in found] == list(range(1, len(ASKED) + 1))
    assert all(1 <= len(blocks(ROOT, e)) <= 12 for e in found)  # an evening's work each, at most


@pytest.fixture(scope='module')
def blank(tmp_path_factory):
    """The handout, every exercise left blank."""
    out = tmp_path_factory.mktemp('handout') / 'h'
    handout.make(str(out))
    return out


def test_each_block_becomes_a_raise_that_names_its_exercise_and_the_rest_is_kept(blank):
    """Line for line: the chapter outside the blocks is the project's, each block one raise at its
    indentation; every other file, the tests included, is the project's; no git history, no data."""
    for chapter in handout.CHAPTERS:
        ours, theirs = open(os.path.join(ROOT, chapter)).read().splitlines(), open(blank / chapter).read().splitlines()
        expected, i = [], 0
        for e in sorted((e for e in handout.exercises() if e.chapter == chapter), key=lambda e: e.lines):
            first, last = e.lines
            indent = ours[first][:len(ours[first]) - len(ours[first].lstrip())]
            expected += ours[i:first] + [f"{indent}raise NotImplementedError('exercise {e.number}: {e.name} in {chapter}')"]
            i = last + 1
        assert theirs == expected + ours[i:], chapter
        ast.parse('\n'.join(theirs))  # still Python
    for name in os.listdir(os.path.join(ROOT, 'tests')):
        if name.endswith('.py'):
            assert (blank / 'tests' / name).read_bytes() == open(os.path.join(ROOT, 'tests', name), 'rb').read()
    assert not (blank / '.git').exists() and not (blank / '.venv').exists()


def test_no_solution_line_is_left_anywhere_in_the_handout(blank):
    """Every line of a solution block that appears nowhere else in the project must appear nowhere
    in the handout: grep finds none."""
    elsewhere = []
    for folder, _, names in os.walk(ROOT):
        if not set(os.path.relpath(folder, ROOT).split(os.sep)) & handout.LEFT_OUT:
            elsewhere += [os.path.join(folder, n) for n in names if n.endswith(('.py', '.md', '.toml', 'Makefile'))]
    solution = {line.strip() for e in handout.exercises() for line in blocks(ROOT, e) if len(line.strip()) > 12}
    outside = set()
    for path in elsewhere:
        text = open(path).read().splitlines()
        exercise_lines = set()
        for e in handout.exercises():
            if os.path.join(ROOT, e.chapter) == path:
                exercise_lines |= set(range(e.lines[0], e.lines[1] + 1))
        outside |= {line.strip() for k, line in enumerate(text) if k not in exercise_lines}
    secret = solution - outside
    assert len(secret) > 30
    for folder, _, names in os.walk(blank):
        for name in names:
            if name.endswith(('.py', '.md', '.toml', 'Makefile')):
                left = secret & {line.strip() for line in open(os.path.join(folder, name)).read().splitlines()}
                assert not left, (name, left)


def test_a_handout_is_not_written_over_a_folder_that_holds_something(tmp_path):
    (tmp_path / 'notes.txt').write_text('mine')
    result = subprocess.run([sys.executable, '-m', 'course.handout', 'make', str(tmp_path)], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr.strip() == f'handout.py: error: {tmp_path} is not empty: name a new ' \
                                                               f'folder, or empty it first'
    assert os.listdir(tmp_path) == ['notes.txt']


def test_the_grade_by_hand():
    """Three tests of cosine_lr, two passed: 10 x 2/3 = 6.7 points; one of crop_flip, failed: 0; a
    whole run that needs both, passed: 1/1 with others in each row, and no points of its own."""
    tests = {'a': {'exercises': ['cosine_lr'], 'passed': True}, 'b': {'exercises': ['cosine_lr'], 'passed': True},
             'c': {'exercises': ['cosine_lr'], 'passed': False}, 'd': {'exercises': ['crop_flip'], 'passed': False},
             'e': {'exercises': ['cosine_lr', 'crop_flip'], 'passed': True}}
    rows = {r['name']: r for r in handout.grade(tests)}
    assert (rows['cosine_lr']['passed'], rows['cosine_lr']['tests'], rows['cosine_lr']['points']) == (2, 3, 6.7)
    assert (rows['crop_flip']['passed'], rows['crop_flip']['tests'], rows['crop_flip']['points']) == (0, 1, 0.0)
    assert rows['cosine_lr']['with_others'] == rows['crop_flip']['with_others_passed'] == 1
    table = handout.table(list(rows.values()))
    assert '| 6 | cosine_lr | schedule.py | 2/3 | 1/1 | 6.7/10 |' in table
    assert table.splitlines()[-1] == '| | total | | | | 6.7/100 |'


def test_a_test_that_fails_in_its_setup_is_not_passed(tmp_path):
    """A test whose fixture raises never ran its checks, as in a handout, where a fixture that trains
    a run meets a blank: the grade records it as not passed, with the blank it met."""
    (tmp_path / 'tests').mkdir()
    (tmp_path / 'tests' / 'test_a_fixture_meets_a_blank.py').write_text(
        'import pytest\n\n\n@pytest.fixture\ndef run():\n'
        '    raise NotImplementedError("exercise 6: cosine_lr in schedule.py")\n\n\n'
        '@pytest.mark.exercise("cosine_lr")\ndef test_it(run):\n    pass\n')
    tests = handout.results(str(tmp_path))
    assert list(tests.values()) == [{'exercises': ['cosine_lr'], 'passed': False, 'blank': 'cosine_lr'}]


def marked(tests):
    """{exercise: its own tests' node ids}, from handout.results' record."""
    own = {}
    for nodeid, test in tests.items():
        if len(test['exercises']) == 1:
            own.setdefault(test['exercises'][0], []).append(nodeid)
    return own


@pytest.mark.slow
def test_each_exercise_is_graded_on_its_own(blank, tmp_path):
    """On the blank handout: every test marked with an exercise fails, each exercise's own tests on
    its own NotImplementedError, and every test marked with none passes (the quick tier). Then, for
    each exercise, a handout with only its solution put back: its own tests pass. Last, with every
    solution back, the handout trains: train.py --epochs 1 on a subset, end to end. The pytest runs
    go two at a time, a core each."""
    record = ('import json, sys; sys.path.insert(0, sys.argv[1]); from course import handout; import pytest; r = handout.Recorder()\n'
              'pytest.main(["-p", "no:terminal", "-p", "no:cacheprovider", "-m", "not slow", "--rootdir", sys.argv[1], '
              '*sys.argv[3:]], plugins=[r])\n'
              'json.dump(r.tests, open(sys.argv[2], "w"))')

    def run(root, tests, name):
        """handout.Recorder's record of the tests, run in the copy at root."""
        out = tmp_path / f'{name}.json'
        subprocess.run([sys.executable, '-c', record, str(root), str(out), *tests], cwd=root, check=True,
                       env=os.environ | {'OMP_NUM_THREADS': '1'})
        return json.loads(out.read_text())

    files = sorted(str(blank / 'tests' / name) for name in os.listdir(blank / 'tests') if name.startswith('test_'))
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        halves = pool.map(run, [blank, blank], [files[::2], files[1::2]], ['even', 'odd'])
        everything = {n: t for half in halves for n, t in half.items()}
    unmarked = {n: t for n, t in everything.items() if not t['exercises']}
    assert unmarked and all(t['passed'] for t in unmarked.values()), [n for n, t in unmarked.items() if not t['passed']]
    own = marked(everything)
    assert sorted(own) == sorted(ASKED), 'every exercise has tests of its own'
    passed = [n for n, t in everything.items() if t['exercises'] and t['passed']]
    assert not passed, f'marked with an exercise, yet passed on the blank handout: {passed}'
    for exercise, tests in own.items():
        assert all(everything[n]['blank'] == exercise for n in tests), (exercise, [everything[n] for n in tests])
    rows = handout.grade(everything, blank)  # as make grade prints them in the handout
    assert [r['name'] for r in rows] == ASKED and all(r['points'] == 0 and r['tests'] > 0 for r in rows), rows

    def alone(exercise):
        """Its own tests, in a handout with only its solution put back."""
        root = tmp_path / exercise.name
        handout.make(str(root), keep={exercise.name})
        return exercise.name, root, run(root, own[exercise.name], exercise.name)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        for name, root, again in pool.map(alone, handout.exercises()):
            assert sorted(again) == sorted(own[name]) and all(t['passed'] for t in again.values()), name
            row, = [r for r in handout.grade(again, root) if r['name'] == name]
            assert row['points'] == handout.POINTS, row
    solved = tmp_path / 'solved'
    handout.make(str(solved), keep=set(ASKED))
    make_cifar(str(tmp_path / 'data'))
    trained = subprocess.run([sys.executable, 'train.py', '--epochs', '1', '--train-subset', '20', '--eval-subset', '10',
                              '--device', 'cpu', '--data-dir', str(tmp_path / 'data'), '--out', str(tmp_path / 'run')],
                             cwd=solved, capture_output=True, text=True)
    assert trained.returncode == 0 and (tmp_path / 'run' / 'summary.json').exists(), trained.stderr
