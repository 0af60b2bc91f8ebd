"""course/classroom.py and course/submissions.py promise a class graded in one command: each
submission taken in safely, only its chapters laid over the instructor's copy with the instructor's
tests, hidden ones included; each graded fenced, costing itself only; and a gradebook, the same
whatever -j, with a feedback file per student. The class here is made from the solutions and the
handout, as students would send them."""
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest

from course import classroom, fence, handout, submissions
from conftest import MAKE, ROOT
from test_handout import written_as_students_write

# In a handout (it has the record) the solutions are cut out: these tests make their class from them.
pytestmark = pytest.mark.skipif(os.path.exists(os.path.join(ROOT, handout.RECORD)),
                                reason='a handout: its exercises\' solutions are cut out')

# The course of these tests: the project's, graded by two of its test files, a second each; the
# exercises those do not test are worth 0, so that every point stands on a test.
TESTS = ('conftest.py', 'test_schedule.py', 'test_stats.py')
WORTH = {'cosine_lr': 10, 'mcnemar_p': 10, 'welch': 10}


# ---------------------------------------------------------------------------------------------
# Taking submissions in.


def zipped(path, members):
    with zipfile.ZipFile(path, 'w') as archive:
        for name, text in members.items():
            archive.writestr(name, text)


def test_each_student_is_a_folder_or_an_archive_named_by_id(tmp_path):
    (tmp_path / 'ada').mkdir()
    zipped(tmp_path / 'bob.zip', {'model.py': ''})
    with tarfile.open(tmp_path / 'cy.tar.gz', 'w:gz'):
        pass
    (tmp_path / 'notes.txt').write_text('not a submission')
    assert submissions.found(str(tmp_path)) == [('ada', str(tmp_path / 'ada')), ('bob', str(tmp_path / 'bob.zip')),
                                                ('cy', str(tmp_path / 'cy.tar.gz'))]


WANTED = ['model.py', 'stats.py', 'train.py']


@pytest.mark.parametrize('member, why', [('../evil.py', 'would unpack outside its folder'),
                                         ('/etc/evil.py', 'would unpack outside its folder'),
                                         ('a/../../evil.py', 'would unpack outside its folder')])
def test_an_archive_that_reaches_outside_its_folder_is_refused_whole(tmp_path, member, why):
    zipped(tmp_path / 's.zip', {'model.py': 'x = 1\n', member: 'boom\n'})
    with pytest.raises(submissions.Refused, match=why):
        submissions.take(str(tmp_path / 's.zip'), WANTED, str(tmp_path / 'out'))
    assert not (tmp_path / 'evil.py').exists() and not (tmp_path / 'out').exists()


def test_a_chapter_that_is_a_link_and_archives_that_will_not_unpack_are_refused(tmp_path):
    with tarfile.open(tmp_path / 'link.tar.gz', 'w:gz') as archive:
        info = tarfile.TarInfo('model.py')
        info.type, info.linkname = tarfile.SYMTYPE, '/etc/passwd'
        archive.addfile(info)
    with pytest.raises(submissions.Refused, match='model.py is a link or a device'):
        submissions.take(str(tmp_path / 'link.tar.gz'), WANTED, str(tmp_path / 'a'))
    (tmp_path / 'bad.zip').write_bytes(b'not a zip at all')
    with pytest.raises(submissions.Refused, match='bad.zip will not unpack'):
        submissions.take(str(tmp_path / 'bad.zip'), WANTED, str(tmp_path / 'b'))
    (tmp_path / 'folder').mkdir()
    os.symlink('/etc/passwd', tmp_path / 'folder' / 'model.py')
    with pytest.raises(submissions.Refused, match='model.py is a link or a device'):
        submissions.take(str(tmp_path / 'folder'), WANTED, str(tmp_path / 'c'))


def test_a_chapter_too_large_is_refused_by_what_it_holds(tmp_path, monkeypatch):
    """The sizes in an archive's headers may lie: the bytes are counted as they come."""
    monkeypatch.setattr(submissions, 'MAX_CHAPTER', 1000)
    zipped(tmp_path / 'big.zip', {'model.py': 'x' * 2000})
    with pytest.raises(submissions.Refused, match='model.py is larger than'):
        submissions.take(str(tmp_path / 'big.zip'), WANTED, str(tmp_path / 'out'))


def test_a_whole_working_folder_gives_its_chapters_and_the_rest_is_listed(tmp_path):
    """As a student zips the folder they worked in: its .venv (links in it), its data set, a tests/
    folder, a conftest.py; only the chapters of the shallowest folder that holds one are taken."""
    for name in ('homework/model.py', 'homework/stats.py', 'homework/tests/conftest.py', 'homework/old/model.py',
                 'sitecustomize.py', 'homework/report.py', 'homework/data/cifar-10-batches-py/data_batch_1'):
        (tmp_path / 'sent' / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / 'sent' / name).write_text(name)
    (tmp_path / 'sent' / 'homework' / '.venv' / 'bin').mkdir(parents=True)
    os.symlink('/usr/bin/python3', tmp_path / 'sent' / 'homework' / '.venv' / 'bin' / 'python')
    shutil.make_archive(str(tmp_path / 'sent'), 'zip', tmp_path / 'sent')
    for sent in (tmp_path / 'sent', tmp_path / 'sent.zip'):
        out = tmp_path / f'out-{sent.name}'
        taken, ignored = submissions.take(str(sent), WANTED, str(out))
        assert taken == {'model.py': str(out / 'model.py'), 'stats.py': str(out / 'stats.py')}
        assert (out / 'model.py').read_text() == 'homework/model.py' and sorted(os.listdir(out)) == ['model.py', 'stats.py']
        assert [f for f in ignored if '.venv' not in f] == [
            'homework/data/cifar-10-batches-py/data_batch_1', 'homework/old/model.py', 'homework/report.py',
            'homework/tests/conftest.py', 'sitecustomize.py']
    assert classroom.grouped(ignored) == ['sitecustomize.py', 'homework/ (5 files)']  # what could change a run, first


def test_make_s_j_is_the_number_of_submissions_at_once():
    assert [classroom.jobs_from(flag) for flag in ('', '-j1', '-j4')] == [1, 1, 4]
    assert classroom.jobs_from('-j') == os.cpu_count()


# ---------------------------------------------------------------------------------------------
# A class of eight, graded.


@pytest.fixture(scope='module')
def course(tmp_path_factory):
    """The instructor's project for these tests: the project, graded by TESTS alone, worth WORTH."""
    root = tmp_path_factory.mktemp('course') / 'project'
    shutil.copytree(ROOT, root, ignore=shutil.ignore_patterns('.git', '.venv', 'data', 'runs', 'runs-*', 'figures', '.gpus',
                                                              '__pycache__', '.pytest_cache'))
    for name in os.listdir(root / 'tests'):
        if name not in TESTS:
            os.remove(root / 'tests' / name)
    points = '\n'.join(f'"{e.name}" = {WORTH.get(e.name, 0)}' for e in handout.exercises())
    (root / 'course' / 'course.toml').write_text(f'[points]\n{points}\n')
    return root


def solved(folder, **replaced):
    """The project's chapters in `folder`, each of `replaced` (chapter: (old, new)) with old text made new."""
    os.makedirs(folder)
    for chapter in {e.chapter for e in handout.exercises()}:
        text = open(os.path.join(ROOT, chapter)).read()
        if chapter in replaced:
            old, new = replaced[chapter]
            assert old in text
            text = text.replace(old, new)
        with open(os.path.join(folder, chapter), 'w') as f:
            f.write(text)


@pytest.fixture(scope='module')
def the_class(course, tmp_path_factory):
    """Eight students, as the issue lists them, in a folder of submissions."""
    top = tmp_path_factory.mktemp('class')
    blank = top / 'handout'
    handout.make(str(blank), root=str(course))
    sent = top / 'submissions'
    sent.mkdir()
    solved(sent / 'all-solved')
    chapters = sorted({e.chapter for e in handout.exercises()})
    os.makedirs(sent / 'blank')
    for chapter in chapters:
        shutil.copy(blank / chapter, sent / 'blank')
    half = top / 'half' / 'homework'
    shutil.copytree(blank, half)
    written_as_students_write(str(half), {'cosine_lr', 'mcnemar_p'})
    shutil.make_archive(str(sent / 'half'), 'zip', top / 'half')  # zipped with its folder: homework/model.py
    cheat = top / 'cheat'
    shutil.copytree(blank, cheat)
    with open(cheat / 'tests' / 'conftest.py', 'a') as f:  # the five lines that scored full marks
        f.write('\n\n@pytest.hookimpl(hookwrapper=True)\ndef pytest_runtest_makereport(item, call):\n'
                '    outcome = yield\n    outcome.get_result().outcome = "passed"\n')
    (cheat / 'tests' / 'test_mine.py').write_text('import pytest\n\n\n@pytest.mark.exercise("welch")\ndef test_it():\n'
                                                  '    pass\n')
    (cheat / 'sitecustomize.py').write_text('import os\nos.environ["PYTEST_ADDOPTS"] = "-p no:warnings"\n')
    shutil.make_archive(str(sent / 'cheater'), 'gztar', cheat)
    solved(sent / 'loop', **{'stats.py': ('    # BEGIN SOLUTION\n    se = math.hypot', '    while True:\n        pass\n    # BEGIN SOLUTION\n    se = math.hypot')})
    solved(sent / 'memory', **{'stats.py': ('def mcnemar_p(b, c):\n', 'def mcnemar_p(b, c):\n    hog = bytearray(64 * 2 ** 30)\n')})
    solved(sent / 'syntax', **{'stats.py': ('def welch(', 'def welch(:\n    pass\n\n\ndef welch_(')})
    zipped(sent / 'escape.zip', {'model.py': open(os.path.join(ROOT, 'model.py')).read(), '../evil.py': 'boom\n'})
    return sent


def expected_rows(notes_after):
    """The gradebook, as it must be: every row, every cell."""
    order = [e.name for e in handout.exercises()]
    worth = [WORTH.get(name, 0) for name in order]
    def row(student, full, notes=''):
        points = [w if name in full else 0 for name, w in zip(order, worth)]
        return [student, *map(str, points), str(sum(points)), '; '.join(filter(None, [notes, notes_after]))]
    every = set(WORTH)
    return [['ID', *order, 'total', 'notes'], ['Points Possible', *map(str, worth), '30', ''],
            row('all-solved', every),
            row('blank', set()),
            row('cheater', set()),
            row('escape', set(), 'refused: ../evil.py would unpack outside its folder'),
            row('half', {'cosine_lr', 'mcnemar_p'}),
            row('loop', every - {'welch'}, '1 test ran past the time limit of 3 s'),  # the rest of welch's fail at once
            row('memory', every - {'mcnemar_p'}, '7 tests ran out of the memory limit of 6 GB'),  # mcnemar_p's 7
            row('syntax', every - {'mcnemar_p', 'welch'})]


@pytest.mark.slow
def test_a_class_of_eight_is_graded_in_one_command_the_same_whatever_j(course, the_class, tmp_path):
    """Every row exactly: the solved one full marks; the blank one, the one with the conftest hook and
    a test file of its own, and the archive that climbs out of its folder none; half solved without
    markers its two; an infinite loop costs its exercise; an allocation far past the memory limit its
    exercise; a syntax error its chapter. The same class with -j 2, through make, gives the same
    gradebook, and one student's feedback says what it should."""
    limits = fence.Limits(test_seconds=3, submission_seconds=300)
    one = tmp_path / 'one' / 'grades.csv'
    one.parent.mkdir()
    classroom.grade_class(str(the_class), str(one), 1, limits, source_root=str(course))
    rows = list(csv.reader(io.StringIO(one.read_text())))
    network = rows[2][-1]  # where bubblewrap does not work, each row says so
    assert network == '' or network.startswith('not in a sandbox'), network
    assert rows == expected_rows(network)

    two = tmp_path / 'two' / 'grades.csv'
    two.parent.mkdir()
    made = subprocess.run([*MAKE[:MAKE.index('-C')], '-C', str(course), *MAKE[MAKE.index('-C') + 2:], '-j2', 'grade-class',
                           f'SUBMISSIONS={the_class}', f'OUT={two}', 'TIMEOUT=3', 'ARGS=--submission-timeout 300'],
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    assert two.read_text() == one.read_text()
    for name in os.listdir(one.parent / 'feedback'):
        assert (two.parent / 'feedback' / name).read_text() == (one.parent / 'feedback' / name).read_text(), name

    cheater = (one.parent / 'feedback' / 'cheater.txt').read_text()
    assert 'Ignored, since the grade takes only the chapters that hold exercises: sitecustomize.py, tests/ (' in cheater
    half = (one.parent / 'feedback' / 'half.txt').read_text()
    assert ' 6. cosine_lr (schedule.py): 10 of 10 points; its tests passed: 5 of 5, hidden tests passed: 3 of 3' in half
    assert '10. welch (stats.py): 0 of 10 points; its tests passed: 0 of 4\n    first to fail: tests/test_stats.py::' in half
    assert 'NotImplementedError: exercise 10: welch in stats.py' in half
    assert 'Total: 20 of 30' in half and 'Limits: 3 s a test, 300 s in all, 6 GB of memory a process' in half


@pytest.mark.slow
def test_the_gradescope_autograder_grades_one_submission_the_same_way(course, the_class, tmp_path):
    """make autograder's zip, unpacked as Gradescope unpacks it, with AUTOGRADER_ROOT for /autograder:
    run_autograder grades a submission and writes results.json in Gradescope's format, a test per
    exercise with its score and max_score, and the total, as grade-class grades it."""
    zipped_grader = tmp_path / 'autograder.zip'
    made = subprocess.run([*MAKE[:MAKE.index('-C')], '-C', str(course), *MAKE[MAKE.index('-C') + 2:], 'autograder',
                           f'OUT={zipped_grader}'], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    found = {}
    for student in ('half', 'blank'):
        root = tmp_path / student
        with zipfile.ZipFile(zipped_grader) as archive:
            assert {'setup.sh', 'run_autograder', handout.RECORD} <= set(archive.namelist())
            archive.extractall(root / 'source')
        os.chmod(root / 'source' / 'run_autograder', 0o755)
        if student == 'half':  # Gradescope hands the grader the files, unpacked
            shutil.unpack_archive(the_class / 'half.zip', root / 'submission')
        else:
            shutil.copytree(the_class / student, root / 'submission')
        ran = subprocess.run([str(root / 'source' / 'run_autograder')], capture_output=True, text=True,
                             env=os.environ | {'AUTOGRADER_ROOT': str(root), 'AUTOGRADER_PYTHON': sys.executable})
        assert ran.returncode == 0, ran.stderr
        found[student] = json.loads((root / 'results' / 'results.json').read_text())
        assert [(t['name'], t['max_score']) for t in found[student]['tests']] == \
            [(f'{e.number}. {e.name} ({e.chapter})', WORTH.get(e.name, 0)) for e in handout.exercises()]
    assert (found['half']['score'], found['blank']['score']) == (20, 0)
    cosine = {student: found[student]['tests'][5] for student in found}
    assert cosine['half']['score'] == 10 and 'its tests passed: 5 of 5, hidden tests passed: 3 of 3' in cosine['half']['output']
    assert cosine['blank']['score'] == 0 and 'NotImplementedError: exercise 6: cosine_lr' in cosine['blank']['output']


def test_the_gradebook_canvas_imports_and_what_a_student_reads(tmp_path):
    """grades.csv by hand: ID, a column per exercise by name, total and notes; a Points Possible row;
    a refused submission's row is zeros and why; a grading without bubblewrap says so on every row.
    The feedback names the first failing test, the hidden tests as a count, and what was ignored."""
    the_record = {'exercises': [{'number': 1, 'name': 'BasicBlock.forward', 'chapter': 'model.py', 'points': 10},
                                {'number': 2, 'name': 'cosine_lr', 'chapter': 'schedule.py', 'points': 15}], 'tests': []}
    row = lambda n, name, chapter, points, out_of, passed, tests, failure=None: {
        'exercise': n, 'name': name, 'chapter': chapter, 'points': points, 'out_of': out_of, 'passed': passed,
        'tests': tests, 'hidden_passed': 1, 'hidden': 2 if n == 2 else 0, 'with_others_passed': 0, 'with_others': 0,
        'first_failure': failure}
    graded = [classroom.Graded('ada', [row(1, 'BasicBlock.forward', 'model.py', 10.0, 10, 3, 3),
                                       row(2, 'cosine_lr', 'schedule.py', 7.5, 15, 1, 2,
                                           {'test': 'tests/test_schedule.py::t', 'message': 'AssertionError: epoch 7\nof 15'})],
                               ['1 test ran past the time limit of 60 s'], ['tests/conftest.py', 'notes.txt']),
              classroom.Graded('bob', [], ['refused: ../x.py would unpack outside its folder'], [])]
    out = tmp_path / 'grades.csv'
    classroom.write_gradebook(str(out), the_record, graded, 'not in a sandbox: network on (bubblewrap is not installed)')
    assert out.read_text().splitlines() == [
        'ID,BasicBlock.forward,cosine_lr,total,notes', 'Points Possible,10,15,25,',
        'ada,10,7.5,17.5,1 test ran past the time limit of 60 s; not in a sandbox: network on (bubblewrap is not installed)',
        'bob,0,0,0,refused: ../x.py would unpack outside its folder; not in a sandbox: network on (bubblewrap is not installed)']
    text = classroom.feedback_text(graded[0], fence.Limits(), '')
    assert ' 2. cosine_lr (schedule.py): 7.5 of 15 points; its tests passed: 1 of 2, hidden tests passed: 1 of 2\n' \
           '    first to fail: tests/test_schedule.py::t\n    AssertionError: epoch 7 of 15' in text
    assert 'Ignored, since the grade takes only the chapters that hold exercises: tests/ (1 file), notes.txt' in text
    assert classroom.feedback_text(graded[1], fence.Limits(), '').splitlines()[2] == \
        'Not graded: refused: ../x.py would unpack outside its folder'
