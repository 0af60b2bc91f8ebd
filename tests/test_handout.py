"""course/handout.py and course/grade.py promise the course's handout: each exercise's block of a
chapter, and nothing else, replaced by a raise that names it; no solution and no hidden test left in
the copy; a record of what was cut, which the grade reads, so that a solution written without
markers keeps its row; and exercises graded each on its own: on the blank handout every exercise's
tests fail on its own blank and every other test passes, and putting one solution back passes that
exercise's tests. Once every exercise is solved, the handout trains."""
import ast
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

from course import grade, handout
from conftest import MAKE, ROOT, make_cifar

# In a handout (it has the record) the solutions are cut out, and with them what these tests check.
pytestmark = pytest.mark.skipif(os.path.exists(os.path.join(ROOT, handout.RECORD)),
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
def the_record():
    """What a handout of the project records: found by pytest's collection, once."""
    return handout.record()


@pytest.fixture(scope='module')
def blank(tmp_path_factory, the_record):
    """The handout, every exercise left blank."""
    out = tmp_path_factory.mktemp('handout') / 'h'
    handout.make(str(out), written=the_record)
    return out


def test_each_block_becomes_a_raise_that_names_its_exercise_and_the_rest_is_kept(blank):
    """Line for line: the chapter outside the blocks is the project's, each block one raise at its
    indentation; every other file is the project's, the tests without their hidden blocks; no git
    history, no data."""
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
            ours = open(os.path.join(ROOT, 'tests', name)).read().splitlines(keepends=True)
            assert (blank / 'tests' / name).read_text() == ''.join(handout.without_hidden(ours)), name
            assert handout.HIDDEN[0] not in (blank / 'tests' / name).read_text()
    assert not (blank / '.git').exists() and not (blank / '.venv').exists()


def test_no_solution_line_is_left_anywhere_in_the_handout(blank):
    """Every line of a solution block that appears nowhere else in the project must appear nowhere
    in the handout: grep finds none."""
    elsewhere = []
    for folder, _, names in os.walk(ROOT):
        if not set(os.path.relpath(folder, ROOT).split(os.sep)) & handout.LEFT_OUT:
            elsewhere += [os.path.join(folder, n) for n in names if n.endswith(('.py', '.md', '.toml', 'Makefile'))
                          and n not in handout.LEFT_OUT]  # tests/mutants.toml quotes the solutions, and is left out
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
    result = subprocess.run([sys.executable, '-m', 'course.handout', str(tmp_path)], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr.strip() == f'handout: error: {tmp_path} is not empty: name a new ' \
                                                               f'folder, or empty it first'
    assert os.listdir(tmp_path) == ['notes.txt']


def test_help_is_the_usage_and_a_flag_is_never_taken_for_the_folder(tmp_path):
    asked = subprocess.run([sys.executable, '-m', 'course.handout', '--help'], cwd=tmp_path, capture_output=True, text=True,
                           env=os.environ | {'PYTHONPATH': ROOT})
    assert asked.returncode == 0 and asked.stdout.startswith('usage: python -m course.handout OUT')
    wrong = subprocess.run([sys.executable, '-m', 'course.handout', '--out'], cwd=tmp_path, capture_output=True, text=True,
                           env=os.environ | {'PYTHONPATH': ROOT})
    assert wrong.returncode == 1 and wrong.stderr.startswith('usage:') and os.listdir(tmp_path) == []


def test_the_record_holds_each_exercise_its_points_and_the_tests_that_grade_it(the_record, blank):
    """The record is what the project's markers and tests say: the ten exercises in reading order,
    10 points each, each with tests of its own; the hidden test of cosine_lr recorded as hidden. The
    handout's own copy of it counts the hidden tests and does not name them, nor do its tests."""
    in_handout = json.loads((blank / handout.RECORD).read_text())
    assert in_handout == handout.for_students(the_record)
    assert 'test_cosine_falls_from_lr_max' not in (blank / handout.RECORD).read_text()
    assert [e['hidden'] for e in in_handout['exercises'] if e['name'] == 'cosine_lr'] == [3]
    assert [(e['number'], e['name'], e['chapter'], e['points']) for e in the_record['exercises']] == \
        [(e.number, e.name, e.chapter, 10) for e in handout.exercises()]
    hidden = [t for t in the_record['tests'] if t['hidden']]
    assert {t['id'].split('[')[0] for t in hidden} == \
        {'tests/test_schedule.py::test_cosine_falls_from_lr_max_towards_lr_min_and_never_rises'}
    assert all(t['exercises'] == ['cosine_lr'] for t in hidden)
    assert 'test_cosine_falls_from_lr_max' not in (blank / 'tests' / 'test_schedule.py').read_text()
    for e in the_record['exercises']:
        assert any(t['exercises'] == [e['name']] and not t['hidden'] for t in the_record['tests']), e


def test_the_exercises_in_the_raises_the_docs_and_the_record_agree(the_record, blank):
    """Exercise n is the same everywhere: the raise in the handout, docs/handout.md's table, the record."""
    table = open(os.path.join(ROOT, 'docs', 'handout.md')).read()
    for e in the_record['exercises']:
        assert f"raise NotImplementedError('exercise {e['number']}: {e['name']} in {e['chapter']}')" in \
            (blank / e['chapter']).read_text()
        assert re.search(rf"^\| {e['number']} \| .*\(`{re.escape(e['name'])}`\) \| {e['chapter']} \|$", table, re.M), e


def test_an_exercise_can_be_worth_other_points(tmp_path):
    """course/course.toml's [points] gives an exercise its weight; the rest keep 10; a weight that is
    no number, or below 0, is one line."""
    (tmp_path / 'course').mkdir()
    (tmp_path / 'course' / 'course.toml').write_text('[points]\ntrain_one_epoch = 15\nwelch = 2.5\n')
    assert handout.read_points(str(tmp_path)) == {'train_one_epoch': 15, 'welch': 2.5}
    (tmp_path / 'course' / 'course.toml').write_text('[points]\nwelch = -1\n')
    with pytest.raises(SystemExit, match='gives each exercise a number of points, 0 or more'):
        handout.read_points(str(tmp_path))


def test_the_grade_by_hand():
    """Three public tests of cosine_lr, two passed, and a hidden one, passed: 10 x 3/4 = 7.5 points
    when the class is graded, 10 x 2/3 = 6.7 in the student's own grade, which does not run it; one
    of crop_flip, failed, worth 15: 0; a whole run that needs both, passed: 1/1 with others in each
    row, and no points of its own. A test skipped (a CUDA one) is left out; one with no result failed."""
    the_record = {'exercises': [{'number': 5, 'name': 'crop_flip', 'chapter': 'augment.py', 'points': 15},
                                {'number': 6, 'name': 'cosine_lr', 'chapter': 'schedule.py', 'points': 10}],
                  'tests': [{'id': i, 'exercises': e, 'hidden': h} for i, e, h in [
                      ('a', ['cosine_lr'], False), ('b', ['cosine_lr'], False), ('c', ['cosine_lr'], False),
                      ('h', ['cosine_lr'], True), ('d', ['crop_flip'], False), ('gpu', ['crop_flip'], False),
                      ('e', ['cosine_lr', 'crop_flip'], False)]]}
    results = {'a': (True, ''), 'b': (True, ''), 'c': (False, 'AssertionError: epoch 3'), 'h': (True, ''),
               'gpu': (None, 'skipped'), 'e': (True, '')}
    rows = {r['name']: r for r in grade.rows(the_record, results, hidden_ran=True)}
    assert (rows['cosine_lr']['passed'], rows['cosine_lr']['tests'], rows['cosine_lr']['hidden_passed'],
            rows['cosine_lr']['hidden'], rows['cosine_lr']['points']) == (2, 3, 1, 1, 7.5)
    assert rows['cosine_lr']['first_failure'] == {'test': 'c', 'message': 'AssertionError: epoch 3'}
    assert (rows['crop_flip']['passed'], rows['crop_flip']['tests'], rows['crop_flip']['points']) == (0, 1, 0.0)
    assert rows['crop_flip']['first_failure'] == {'test': 'd', 'message': grade.NOT_RUN}
    assert rows['cosine_lr']['with_others'] == rows['crop_flip']['with_others_passed'] == 1
    own = {r['name']: r for r in grade.rows(the_record, results, hidden_ran=False)}
    assert (own['cosine_lr']['points'], own['cosine_lr']['hidden_passed']) == (6.7, None)
    table = grade.table(list(own.values()))
    assert '| 6 | cosine_lr | schedule.py | 2/3 | 1 at grading | 1/1 | 6.7/10 |' in table
    assert table.splitlines()[-1] == '| | total | | | | | 6.7/25 |'


def recorded(root, *tests):
    """The tests given (all of them if none), run in `root` with the recorder: {id: {'exercises',
    'passed', 'message'}}, with every test collected, as the grade reads them."""
    descriptor, out = tempfile.mkstemp(suffix='.jsonl', dir=root)  # two may run at once in one root
    os.close(descriptor)
    subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'course.recorder', '-p', 'no:cacheprovider',
                    '--record', out, '-m', 'not slow', *(tests or ['tests'])], cwd=root, capture_output=True,
                   env=os.environ | {'OMP_NUM_THREADS': '1', 'PYTHONPATH': ROOT})  # root's own modules first: cwd
    lines = [json.loads(line) for line in open(out)]
    results = grade.outcomes(out)
    os.remove(out)
    return {c['collected']: {'exercises': c['exercises'], 'passed': results.get(c['collected'], (False,))[0],
                             'message': results.get(c['collected'], (None, ''))[1]} for c in lines if 'collected' in c}


def make_tests(root, **files):
    """root/tests, with the exercise mark registered as the project's conftest.py does, and a test
    file for each of `files` (name: its text)."""
    (root / 'tests').mkdir()
    (root / 'tests' / 'conftest.py').write_text(
        'def pytest_configure(config):\n    config.addinivalue_line("markers", "exercise(name): an exercise")\n')
    for name, text in files.items():
        (root / 'tests' / f'{name}.py').write_text(text)


def test_a_test_that_fails_in_its_setup_is_not_passed(tmp_path):
    """A test whose fixture raises never ran its checks, as in a handout, where a fixture that trains
    a run meets a blank: the grade records it as not passed, with the blank it met."""
    make_tests(tmp_path, test_a_fixture_meets_a_blank=(
        'import pytest\n\n\n@pytest.fixture\ndef run():\n'
        '    raise NotImplementedError("exercise 6: cosine_lr in schedule.py")\n\n\n'
        '@pytest.mark.exercise("cosine_lr")\ndef test_it(run):\n    pass\n'))
    assert list(recorded(str(tmp_path)).values()) == [
        {'exercises': ['cosine_lr'], 'passed': False, 'message': 'NotImplementedError: exercise 6: cosine_lr in schedule.py'}]


def recorded_alone(root, *options):
    """root/tests run by pytest with the recorder (and `options`), in a process of its own: the
    outcomes file it wrote."""
    out = str(root / 'outcomes.jsonl')
    subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'course.recorder', '-p', 'no:cacheprovider', '--record',
                    out, *options, 'tests'], cwd=root, capture_output=True, timeout=60, env=os.environ | {'PYTHONPATH': ROOT})
    return out


def test_a_test_past_its_time_limit_fails_though_the_code_it_calls_catches_exception(tmp_path):
    """The time limit stops code that catches Exception, as a student's retry loop does: it is
    raised as a BaseException, as KeyboardInterrupt is, and the test fails with what it ran past."""
    make_tests(tmp_path, test_retries=(
        'import time\n\n\ndef test_it():\n    while True:\n        try:\n            time.sleep(0.05)\n'
        '        except Exception:\n            pass\n'))
    out = recorded_alone(tmp_path, '--test-timeout', '1')
    (passed, message), = grade.outcomes(out).values()
    assert not passed and message.endswith('TestTimeout: the test ran past its time limit of 1 s'), message


def test_a_timeout_skips_the_rest_of_its_exercise_only_when_the_test_was_its_alone(tmp_path):
    """A test of one exercise that ran past its limit says that exercise loops: its other tests are
    not run, each failing at once with why. A test of two exercises that did says which of them
    loops no more than the other: their own tests run."""
    make_tests(tmp_path, test_loops=(
        'import time\nimport pytest\n\n\n@pytest.mark.exercise("a", "b")\ndef test_shared():\n    time.sleep(60)\n\n\n'
        '@pytest.mark.exercise("a")\ndef test_a():\n    pass\n\n\n'
        '@pytest.mark.exercise("c")\ndef test_c_loops():\n    time.sleep(60)\n\n\n'
        '@pytest.mark.exercise("c")\ndef test_c():\n    pass\n'))
    out = recorded_alone(tmp_path, '--test-timeout', '1')
    found = {name.split('::')[1]: (passed, message.split(': ', 1)[-1]) for name, (passed, message) in grade.outcomes(out).items()}
    assert found == {'test_shared': (False, 'the test ran past its time limit of 1 s'), 'test_a': (True, ''),
                     'test_c_loops': (False, 'the test ran past its time limit of 1 s'),
                     'test_c': (False, 'not run: c ran past the time limit in a test of its own')}, found


def test_only_a_skip_the_test_s_own_marks_ask_for_here_is_skipped(tmp_path):
    """A CUDA test on a machine without one is skipped here, by its own mark: left out of the grade.
    A test that the code it calls skipped (pytest.skip in a student's function) did not pass."""
    make_tests(tmp_path, test_skips=(
        'import pytest\n\n\n@pytest.mark.skipif(True, reason="no CUDA GPU here")\ndef test_gpu():\n    pass\n\n\n'
        'def test_asked():\n    pytest.skip("the code under test asked for it")\n'))
    out = recorded_alone(tmp_path)
    assert grade.outcomes(out) == {'tests/test_skips.py::test_gpu': (None, 'skipped'),
                                        'tests/test_skips.py::test_asked': (False, 'skipped, though nothing here asks to skip it')}


def marked(tests):
    """{exercise: its own tests' node ids}, from recorded()'s record, but those skipped here (CUDA's)."""
    own = {}
    for nodeid, test in tests.items():
        if len(test['exercises']) == 1 and test['passed'] is not None:
            own.setdefault(test['exercises'][0], []).append(nodeid)
    return own


@pytest.mark.slow
def test_each_exercise_is_graded_on_its_own(blank, the_record, tmp_path):
    """On the blank handout: every test marked with an exercise fails, each exercise's own tests on
    its own NotImplementedError, and every test marked with none passes (the quick tier). Then, for
    each exercise, a handout with only its solution put back: its own tests pass. Last, with every
    solution back, the handout trains: train.py --epochs 1 on a subset, end to end. The pytest runs
    go two at a time, a core each."""
    files = sorted(f'tests/{name}' for name in os.listdir(blank / 'tests') if name.startswith('test_'))
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        halves = pool.map(lambda some: recorded(str(blank), *some), [files[::2], files[1::2]])
        everything = {n: t for half in halves for n, t in half.items()}
    unmarked = {n: t for n, t in everything.items() if not t['exercises']}
    assert unmarked and all(t['passed'] is not False for t in unmarked.values()), \
        [n for n, t in unmarked.items() if t['passed'] is False]
    own = marked(everything)
    assert sorted(own) == sorted(ASKED), 'every exercise has tests of its own'
    passed = [n for n, t in everything.items() if t['exercises'] and t['passed']]
    assert not passed, f'marked with an exercise, yet passed on the blank handout: {passed}'
    for exercise, tests in own.items():
        blanks = [re.search(r'NotImplementedError: exercise \d+: ([\w.]+) in', everything[n]['message']) for n in tests]
        assert all(b and b.group(1) == exercise for b in blanks), (exercise, [everything[n] for n in tests])
    results = {n: (t['passed'], t['message']) for n, t in everything.items()}
    rows = grade.rows(the_record, results, hidden_ran=False)  # as make grade prints them in the handout
    assert [r['name'] for r in rows] == ASKED and all(r['points'] == 0 and r['tests'] > 0 for r in rows), rows

    def alone(exercise):
        """Its own public tests, those skipped here too (a CUDA test says nothing of its points), in a
        handout with only its solution put back."""
        root = tmp_path / exercise.name
        handout.make(str(root), keep={exercise.name}, written=the_record)
        tests = [t['id'] for t in the_record['tests'] if t['exercises'] == [exercise.name] and not t['hidden']]
        return exercise.name, root, recorded(str(root), *tests)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        for name, root, again in pool.map(alone, handout.exercises()):
            results = {n: (t['passed'], t['message']) for n, t in again.items()}
            assert all(results[n][0] for n in own[name]), (name, [(n, results[n]) for n in own[name] if not results[n][0]])
            row, = [r for r in grade.rows(the_record, results, hidden_ran=False) if r['name'] == name]
            assert row['points'] == 10, row
    solved = tmp_path / 'solved'
    handout.make(str(solved), keep=set(ASKED), written=the_record)
    make_cifar(str(tmp_path / 'data'))
    trained = subprocess.run([sys.executable, 'train.py', '--epochs', '1', '--train-subset', '20', '--eval-subset', '10',
                              '--device', 'cpu', '--data-dir', str(tmp_path / 'data'), '--out', str(tmp_path / 'run')],
                             cwd=solved, capture_output=True, text=True)
    assert trained.returncode == 0 and (tmp_path / 'run' / 'summary.json').exists(), trained.stderr


def written_as_students_write(root, names):
    """In the handout at `root`, each exercise of `names` solved as a student solves it: the raise
    replaced by the solution's lines, without markers."""
    for e in handout.exercises():
        if e.name in names:
            solution = open(os.path.join(ROOT, e.chapter)).read().splitlines(keepends=True)[e.lines[0] + 1:e.lines[1]]
            path = os.path.join(root, e.chapter)
            lines = open(path).read().splitlines(keepends=True)
            at = next(i for i, line in enumerate(lines) if f"'exercise {e.number}: {e.name} in" in line)
            lines[at:at + 1] = solution
            open(path, 'w').writelines(lines)


@pytest.mark.slow
def test_a_solution_without_markers_keeps_its_row_and_its_points(blank, tmp_path):
    """In a fresh handout, cosine_lr solved as a student writes it, the raise replaced by one line of
    code, no markers: make grade still has ten rows, numbered as the raises were, 100 points in all,
    and cosine_lr's row has all of its own tests and its 10 points; the hidden tests are counted at
    grading. And with every exercise solved so, the handout's own tests_handout skips (a handout)."""
    copy = tmp_path / 'h'
    shutil.copytree(blank, copy)
    written_as_students_write(str(copy), {'cosine_lr'})
    assert 'exercise 6' not in (copy / 'schedule.py').read_text()
    shown = subprocess.run([*MAKE[:MAKE.index('-C')], '-C', str(copy), *MAKE[MAKE.index('-C') + 2:], 'grade'],
                           capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    rows = [line for line in shown.stdout.splitlines() if re.match(r'\| \d+ \|', line)]
    assert [int(r.split('|')[1]) for r in rows] == list(range(1, 11))
    assert re.fullmatch(r'\| 6 \| cosine_lr \| schedule.py \| (\d+)/\1 \| 3 at grading \| 0/\d+ \| 10/10 \|', rows[5]), rows[5]
    assert shown.stdout.splitlines()[-1] == '| | total | | | | | 10/100 |'
    written_as_students_write(str(copy), set(ASKED) - {'cosine_lr'})
    itself = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-rs', 'tests/test_handout.py'], cwd=copy,
                            capture_output=True, text=True)
    assert itself.returncode == 0 and 'a handout: its exercises\' solutions are cut out' in itself.stdout, itself.stdout
