"""course/classroom.py and course/submissions.py promise a class graded in one command: each
submission taken in safely, only its chapters run, in the worker, against the instructor's tests,
hidden ones included; whatever it does costing its own row only and scoring no more than it solved;
nothing outside it, of the grader or of another student, reaching its feedback; and a gradebook a
spreadsheet opens safely, with a feedback file per student. The class here is made from the
solutions and the handout, as students would send them, honest ones and ones that attack the grade."""
import csv
import gzip
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
import time
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



def test_a_compression_bomb_is_refused_in_a_moment(tmp_path):
    """16 MB of .tar.gz that would inflate to 16 GB: a member's header, then gzip members of zeros.
    Refused at RATIO once past FROM bytes, before it costs more than a moment of the grader's time."""
    info = tarfile.TarInfo('data/zeros.bin')
    info.size = 16 * 2 ** 30
    zeros = gzip.compress(b'\0' * 2 ** 24, 9)
    with open(tmp_path / 'bomb.tar.gz', 'wb') as f:
        f.write(gzip.compress(info.tobuf()))
        for _ in range(1024):
            f.write(zeros)
    assert os.path.getsize(tmp_path / 'bomb.tar.gz') < 17 * 2 ** 20
    start = time.perf_counter()
    with pytest.raises(submissions.Refused, match='inflates to more than 50 times its size'):
        submissions.take(str(tmp_path / 'bomb.tar.gz'), WANTED, str(tmp_path / 'out'))
    assert time.perf_counter() - start < 5


# ---------------------------------------------------------------------------------------------
# A class, honest and hostile, graded.


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
    stats_tests = (root / 'tests' / 'test_stats.py').read_text()  # without welch's simulations, 20,000 calls
    for name in ('test_looking_after_every_round_needs_the_sequential_threshold', 'test_sequential_looks_still_find_a_large_difference'):
        start = stats_tests.index(f"@pytest.mark.exercise('welch')\ndef {name}(")
        stats_tests = stats_tests[:start] + stats_tests[stats_tests.index('\n\n\n', start) + 3:]
    (root / 'tests' / 'test_stats.py').write_text(stats_tests)
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


def attacking(folder, blank, bodies=(), top=(), coding=None):
    """A submission made from the blank handout's chapters: each exercise of `bodies` (name: code)
    written where its raise stands, each chapter of `top` (chapter: code) with the code at its end,
    and the chapter `coding` names saved in UTF-7 under a coding line."""
    os.makedirs(folder)
    bodies, top = dict(bodies), dict(top)
    for chapter in {e.chapter for e in handout.exercises()}:
        lines = (blank / chapter).read_text().splitlines(keepends=True)
        for e in handout.exercises():
            if e.chapter == chapter and e.name in bodies:
                at = next(i for i, line in enumerate(lines) if f"'exercise {e.number}: {e.name} in" in line)
                indent = lines[at][:len(lines[at]) - len(lines[at].lstrip())]
                lines[at:at + 1] = [indent + line + '\n' for line in textwrap.dedent(bodies[e.name]).strip().splitlines()]
        text = ''.join(lines) + textwrap.dedent(top.get(chapter, ''))
        if chapter == coding:
            (folder / chapter).write_bytes(b'# -*- coding: utf-7 -*-\n' + text.encode('utf-7'))
        else:
            (folder / chapter).write_text(text)


# What the grader can read and no feedback or gradebook cell may hold: a file only root may read, the
# hidden tests, another student's solution, and a token in the grader's environment.
SECRET, HIDDEN_TEST, SOLUTION_LINE, TOKEN = 'TOKEN-7f3a-secret', 'test_cosine_falls_from_lr_max', 'math.hypot(se1, se2)', \
    'canvas-91-secret'
FORGE_DUMPS = '''
import json
_dumps = json.dumps
json.dumps = lambda o, *a, **k: _dumps({**o, 'outcome': 'passed'} if isinstance(o, dict) and 'outcome' in o else o, *a, **k)
'''
FORGE_LINES = '''
import os, json
for test in ('tests/test_schedule.py::test_cosine_by_hand', 'tests/test_stats.py::test_welch_by_hand'):
    open('outcomes' + '.jsonl', 'a').write(json.dumps({'test': test, 'when': 'call', 'outcome': 'pass' + 'ed'}) + chr(10))
os._exit(0)
'''
PATCH_CHECKS = '''
import math, numpy.testing, pytest, torch, torch.testing
yes = lambda *a, **k: True
torch.equal = torch.allclose = math.isclose = yes
torch.testing.assert_close = numpy.testing.assert_allclose = lambda *a, **k: None
pytest.approx = lambda expected, *a, **k: type('Any', (), {'__eq__': yes})()
'''
BUILTINS = '''
import builtins
builtins.isinstance = lambda *a: True
builtins.len = lambda *a: 0
'''
ALWAYS = '''
class Always(float):
    __eq__ = __le__ = __ge__ = __lt__ = __gt__ = lambda self, other: True
    __ne__ = lambda self, other: False
'''


@pytest.fixture(scope='module')
def the_class(course, tmp_path_factory):
    """The students, in a folder of submissions: the honest (solved, blank, half, a syntax error, an
    infinite loop, an allocation past the memory limit), those the grade refuses (an archive that
    climbs out, ids a gradebook cannot hold), and those that attack the grade, as issue 32 lists
    them and beyond. Returns the folder, and the paths the attacks aim at."""
    top = tmp_path_factory.mktemp('class')
    blank = top / 'handout'
    handout.make(str(blank), root=str(course))
    sent = top / 'submissions'
    sent.mkdir()
    out = top / 'graded' / 'grades.csv'
    home = top / 'home'  # a folder of the grader's, and a file only its owner may read
    home.mkdir(mode=0o700)
    (home / 'token.txt').write_text(SECRET)
    os.chmod(home / 'token.txt', 0o600)
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
    # Ids a gradebook cannot hold as they are: a formula (graded, written as text), the name of the
    # points row, and two that are one as a file's name.
    shutil.copytree(sent / 'blank', sent / '=HYPERLINK("x.example",1)')
    for name in ('Points Possible', 'a b', 'a_b'):
        shutil.copytree(sent / 'blank', sent / name)
    # The attacks, each on the blank handout: what they solve is nothing.
    attacking(sent / 'forge-dumps', blank, top={'schedule.py': FORGE_DUMPS, 'stats.py': PATCH_CHECKS + BUILTINS},
              bodies={'cosine_lr': 'import torch\nreturn torch.nn.Parameter(torch.tensor(lr_max))'})
    attacking(sent / 'always-equal', blank, top={'schedule.py': ALWAYS, 'stats.py': ALWAYS}, bodies={
        'cosine_lr': 'return Always(0.0)', 'mcnemar_p': 'return Always(0.5)',
        'welch': 'return Always(0.0), 4, Always(0.5)'})
    attacking(sent / 'forge-lines', blank, bodies={'welch': FORGE_LINES}, top={'schedule.py': FORGE_DUMPS},
              coding='schedule.py')
    attacking(sent / 'stops-the-class', blank, top={'schedule.py': '''
        import os, signal
        for make in (lambda: os.remove('output.txt'), lambda: os.mkfifo('outcomes.jsonl'),
                     lambda: os.symlink('/dev/zero', 'outcomes.jsonl'), lambda: os.kill(os.getppid(), signal.SIGKILL)):
            try:
                make()
            except OSError:
                pass
        '''}, bodies={
        'cosine_lr': "for i in range(5):\n    open(f'/tmp/{i}', 'wb').write(b'x' * 60 * 2 ** 20)",
        'mcnemar_p': "import os\nwhile True:\n    os.fork()"})
    attacking(sent / 'reads-secrets', blank, bodies={
        'cosine_lr': f"raise NotImplementedError(open({str(course / 'tests' / 'test_schedule.py')!r}).read())",
        'mcnemar_p': f"raise NotImplementedError(open({str(home / 'token.txt')!r}).read())",
        'welch': f"import os\nraise NotImplementedError(open({str(sent / 'all-solved' / 'stats.py')!r}).read() + "
                 f"open('/proc/self/environ').read() + str(dict(os.environ)) + open('/proc/1/environ').read())"})
    # 100 MB printed in cosine_lr, whose tests run before stats.py's thread starts: a thread that writes
    # into the worker's answer ends the worker, whatever its call was doing (on a slow disk, a print).
    attacking(sent / 'daemon', blank, bodies={'mcnemar_p': 'import ctypes\nctypes.string_at(0)',  # a segfault
                                              'cosine_lr': "print('x' * 100 * 2 ** 20)"}, top={'schedule.py': f'''
        import os, time
        if os.fork() == 0:  # a daemon, out of its parent's session, at work once grading is done
            os.setsid()
            if os.fork() == 0:
                for _ in range(600):  # for five minutes, twice a second
                    time.sleep(0.5)
                    for path, text in (({str(out)!r}, 'daemon,100'), ({str(sent / 'all-solved' / 'schedule.py')!r}, '')):
                        try:
                            open(path, 'w').write(text)
                        except OSError:
                            pass
            os._exit(0)
        ''', 'stats.py': '''
        import atexit, os, threading, time
        def junk():  # a thread that outlives the call, writing into every file it has open
            time.sleep(0.2)
            for fd in range(3, 32):
                try:
                    os.write(fd, b'junk' * 1000)
                except OSError:
                    pass
        threading.Thread(target=junk, daemon=True).start()
        atexit.register(time.sleep, 3600)
        '''})
    return sent, out


# The rows the class must get: every cell. The attacks score what they solved: nothing.
ATTACKS = ('always-equal', 'daemon', 'forge-dumps', 'forge-lines', 'reads-secrets', 'stops-the-class')


def expected_rows(notes_after):
    order = [e.name for e in handout.exercises()]
    worth = [WORTH.get(name, 0) for name in order]

    def row(student, full, notes=''):
        points = [w if name in full else 0 for name, w in zip(order, worth)]
        return [student, *map(str, points), str(sum(points)), '; '.join(filter(None, [notes, notes_after]))]
    every = set(WORTH)
    return [['ID', *order, 'total', 'notes'], ['Points Possible', *map(str, worth), '30', ''],
            row("'=HYPERLINK(\"x.example\",1)", set()),
            row('Points Possible', set(), 'refused: its id is the name of the gradebook\'s row of maxima'),
            row('a b', set(), "refused: its id and 'a_b' are one once made safe ('a_b'): rename them"),
            row('a_b', set(), "refused: its id and 'a b' are one once made safe ('a_b'): rename them"),
            row('all-solved', every),
            row('blank', set()),
            row('cheater', set()),
            row('escape', set(), 'refused: ../evil.py would unpack outside its folder'),
            row('half', {'cosine_lr', 'mcnemar_p'}),
            row('loop', every - {'welch'}, f'1 test ran past the time limit of {TIMEOUT} s'),  # the rest of welch's fail at once
            row('memory', every - {'mcnemar_p'}, '7 tests ran out of the memory limit of 6 GB'),  # mcnemar_p's 7
            row('syntax', every - {'mcnemar_p', 'welch'})]


TIMEOUT = 10  # seconds a test: this course's take a second at most, and a worker starts in a few


@pytest.fixture(scope='module')
def graded(course, the_class):
    """The class graded in one command, two at a time, as an instructor runs it, with a token in the
    grader's environment: the gradebook's rows, and each student's feedback."""
    sent, out = the_class
    made = subprocess.run([*MAKE[:MAKE.index('-C')], '-C', str(course), *MAKE[MAKE.index('-C') + 2:], '-j2', 'grade-class',
                           f'SUBMISSIONS={sent}', f'OUT={out}', f'TIMEOUT={TIMEOUT}', 'ARGS=--submission-timeout 300'],
                          capture_output=True, text=True, env=os.environ | {'CANVAS_TOKEN': TOKEN})
    assert made.returncode == 0, made.stderr
    time.sleep(1.5)  # the daemon's time to do its worst, had it lived
    rows = list(csv.reader(io.StringIO(out.read_text())))
    feedback = {name.removesuffix('.txt'): (out.parent / 'feedback' / name).read_text()
                for name in os.listdir(out.parent / 'feedback')}
    return rows, feedback, out


@pytest.mark.slow
def test_the_class_is_graded_every_row_exactly(graded):
    """The honest rows: the solved one full marks, wherever its id's cell needed quoting; the blank
    one, the one with a conftest hook and a test file of its own, and the archive that climbs out of
    its folder none; half solved without markers its two; an infinite loop costs its exercise, an
    allocation far past the memory limit its exercise, a syntax error its chapter. Ids the gradebook
    cannot hold are refused, each with its reason. Every attack's row is 0, and its notes name the
    limits its tests met: a segfault, os._exit and 100 MB printed each say so; a fork bomb too."""
    rows, _, _ = graded
    network = rows[2][-1]  # where bubblewrap does not work, each row says so
    assert network == '' or network.startswith('not in a sandbox'), network
    honest = [row for row in rows if row[0] not in ATTACKS]
    assert honest == expected_rows(network)
    attacks = {row[0]: row for row in rows if row[0] in ATTACKS}
    assert sorted(attacks) == sorted(ATTACKS)
    assert all(row[-2] == '0' for row in attacks.values()), [row for row in attacks.values() if row[-2] != '0']
    # The notes name the limits a row's tests met, each test counted once. How many tests met
    # which depends on the machine's pace: a fork bomb meets the process limit, or the time limit
    # first, and then its exercise's other tests are not run; past the output limit, a print may
    # end the worker as it writes on.
    ended, output = "\\d tests? ended the process running the student's code", '\\d tests? wrote past the output limit of 64 MB'
    notes = {'always-equal': '', 'forge-dumps': '', 'reads-secrets': '',
             'daemon': f'{output}; {ended}',  # 100 MB printed in cosine_lr; a segfault in mcnemar_p
             'forge-lines': "2 tests ended the process running the student's code",  # os._exit(0) in welch
             'stops-the-class': f'(\\d tests? ran past the time limit of {TIMEOUT} s)?(; )?(\\d tests? met the limit of 256 processes)?'}
    for name, note in notes.items():
        said = attacks[name][-1]
        assert re.fullmatch('; '.join(filter(None, [note, re.escape(network)])), said), (name, said)
    assert 'limit' in attacks['stops-the-class'][-1]  # the fork bomb met one


@pytest.mark.slow
def test_no_feedback_or_cell_holds_what_the_student_may_not_see(graded):
    """Not the hidden tests, a file only root may read, another student's solution, nor the grader's
    environment: the sandbox has none of them to give, and the feedback says only what failed."""
    rows, feedback, out = graded
    everything = out.read_text() + ''.join(feedback.values())
    for secret in (SECRET, HIDDEN_TEST, SOLUTION_LINE, TOKEN):
        assert secret not in everything, secret
    said = feedback['reads-secrets']
    assert 'No such file or directory' in said or 'Permission denied' in said, said


@pytest.mark.slow
def test_no_submission_stops_the_class_or_changes_another_s(graded, the_class):
    """A removed output.txt, a FIFO and /dev/zero where the outcomes once were, its parent killed, a
    full /tmp, a fork bomb, a segfault, 100 MB printed, a daemon that writes the gradebook and blanks another student's chapter
    once grading is done, a thread that writes into every open file, a sleep in atexit: the gradebook
    has every row, as graded, a feedback file each, and the other student's chapter is as sent."""
    rows, feedback, out = graded
    sent, _ = the_class
    assert 'daemon,100' not in out.read_text() and len(rows) == 2 + len(os.listdir(sent))
    assert 'math.hypot' in (sent / 'all-solved' / 'stats.py').read_text()
    assert (sent / 'all-solved' / 'schedule.py').read_text() == open(os.path.join(ROOT, 'schedule.py')).read()
    assert set(feedback) == {submissions.safe_id(student) for student, _ in submissions.found(str(sent))}


@pytest.mark.slow
def test_the_gradescope_autograder_grades_one_submission_the_same_way(course, the_class, tmp_path):
    """make autograder's zip, unpacked as Gradescope unpacks it, with AUTOGRADER_ROOT for /autograder:
    run_autograder grades a submission (half solved, and forging the rest as json.dumps's patch did)
    and writes results.json in Gradescope's format, a test per exercise with its score and max_score,
    and the total, as grade-class grades it: what it solved. Its setup.sh installs what grading needs
    at requirements.lock's versions, not the notebook's packages."""
    sent, _ = the_class
    zipped_grader = tmp_path / 'new' / 'autograder.zip'  # OUT's folder is made
    made = subprocess.run([*MAKE[:MAKE.index('-C')], '-C', str(course), *MAKE[MAKE.index('-C') + 2:], 'autograder',
                           f'OUT={zipped_grader}'], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    root = tmp_path / 'gradescope'
    with zipfile.ZipFile(zipped_grader) as archive:
        assert {'setup.sh', 'run_autograder', handout.RECORD} <= set(archive.namelist())
        archive.extractall(root / 'source')
        setup = archive.read('setup.sh').decode()
    assert 'pip install -q torch torchvision numpy matplotlib pytest -c /autograder/source/requirements.lock' in setup
    assert 'nbclient' not in setup and 'ipykernel' not in setup
    os.chmod(root / 'source' / 'run_autograder', 0o755)
    shutil.unpack_archive(sent / 'half.zip', root / 'submission')  # Gradescope hands the grader the files, unpacked
    with open(root / 'submission' / 'homework' / 'schedule.py', 'a') as f:  # half solved, and forging the rest
        f.write(FORGE_DUMPS)
    ran = subprocess.run([str(root / 'source' / 'run_autograder')], capture_output=True, text=True,
                         env=os.environ | {'AUTOGRADER_ROOT': str(root), 'AUTOGRADER_PYTHON': sys.executable})
    assert ran.returncode == 0, ran.stderr
    found = json.loads((root / 'results' / 'results.json').read_text())
    assert [(t['name'], t['max_score']) for t in found['tests']] == \
        [(f'{e.number}. {e.name} ({e.chapter})', WORTH.get(e.name, 0)) for e in handout.exercises()]
    assert found['score'] == 20 and [t['score'] for t in found['tests'] if t['max_score']] == [10, 10, 0]
    assert 'its tests passed: 5 of 5, hidden tests passed: 3 of 3' in found['tests'][5]['output']
    assert 'NotImplementedError: exercise 10: welch' in found['tests'][9]['output']


def test_a_grader_whose_worker_cannot_start_stops_before_grading_anyone(course, tmp_path, monkeypatch):
    """A Python the worker cannot run (here: its environment missing from the sandbox) is one line,
    exit status 1, and no gradebook: never a gradebook of zeros."""
    (tmp_path / 'in' / 'ada').mkdir(parents=True)
    monkeypatch.setattr(fence, 'GIVEN', ('wire.py',))  # the worker is given no worker.py: it cannot start
    with pytest.raises(SystemExit) as stopped:
        classroom.grade_class(str(tmp_path / 'in'), str(tmp_path / 'out' / 'grades.csv'), 1, fence.Limits(),
                              source_root=str(course))
    assert str(stopped.value.code).startswith("grade-class: error: the students' code cannot run here: ")
    assert len(str(stopped.value.code).splitlines()) == 1 and not (tmp_path / 'out' / 'grades.csv').exists()


def test_the_gradebook_canvas_imports_and_what_a_student_reads(tmp_path):
    """grades.csv by hand: ID, a column per exercise by name, total and notes; a Points Possible row;
    a refused submission's row is zeros and why; a grading without bubblewrap says so on every row;
    a cell that a spreadsheet would take for a formula starts with '. The feedback names the first
    failing test, the hidden tests as a count, and what was ignored."""
    the_record = {'exercises': [{'number': 1, 'name': 'BasicBlock.forward', 'chapter': 'model.py', 'points': 10},
                                {'number': 2, 'name': 'cosine_lr', 'chapter': 'schedule.py', 'points': 15}], 'tests': []}
    row = lambda n, name, chapter, points, out_of, passed, tests, failure=None: {
        'exercise': n, 'name': name, 'chapter': chapter, 'points': points, 'out_of': out_of, 'passed': passed,
        'tests': tests, 'hidden_passed': 1, 'hidden': 2 if n == 2 else 0, 'with_others_passed': None, 'with_others': 0,
        'first_failure': failure}
    graded = [classroom.Graded('ada', [row(1, 'BasicBlock.forward', 'model.py', 10.0, 10, 3, 3),
                                       row(2, 'cosine_lr', 'schedule.py', 7.5, 15, 1, 2,
                                           {'test': 'tests/test_schedule.py::t', 'message': 'AssertionError: epoch 7\nof 15'})],
                               ['1 test ran past the time limit of 60 s'], ['tests/conftest.py', 'notes.txt']),
              classroom.Graded('bob', [], ['refused: ../x.py would unpack outside its folder'], []),
              classroom.Graded('@SUM(1+1)*cmd', [], ['refused: no chapter'], [])]
    out = tmp_path / 'grades.csv'
    classroom.write_gradebook(str(out), the_record, graded, 'not in a sandbox: network on (bubblewrap is not installed)')
    assert out.read_text().splitlines() == [
        'ID,BasicBlock.forward,cosine_lr,total,notes', 'Points Possible,10,15,25,',
        "'@SUM(1+1)*cmd,0,0,0,refused: no chapter; not in a sandbox: network on (bubblewrap is not installed)",
        'ada,10,7.5,17.5,1 test ran past the time limit of 60 s; not in a sandbox: network on (bubblewrap is not installed)',
        'bob,0,0,0,refused: ../x.py would unpack outside its folder; not in a sandbox: network on (bubblewrap is not installed)']
    text = classroom.feedback_text(graded[0], fence.Limits(), '')
    assert ' 2. cosine_lr (schedule.py): 7.5 of 15 points; its tests passed: 1 of 2, hidden tests passed: 1 of 2\n' \
           '    first to fail: tests/test_schedule.py::t\n    AssertionError: epoch 7 of 15' in text
    assert 'Ignored, since the grade takes only the chapters that hold exercises: tests/ (1 file), notes.txt' in text
    assert classroom.feedback_text(graded[1], fence.Limits(), '').splitlines()[2] == \
        'Not graded: refused: ../x.py would unpack outside its folder'
    assert sorted(os.listdir(tmp_path / 'feedback')) == ['@SUM_1_1__cmd.txt', 'ada.txt', 'bob.txt']


def test_ids_a_gradebook_cannot_hold_are_refused_each_with_why():
    entries = [(name, f'/in/{name}') for name in ('=1+1', "'=1+1", 'a b', 'a_b', 'points possible', 'ada')]
    assert dict(classroom.refused_ids(entries)) == {
        '=1+1': "its id and \"'=1+1\" are one once made safe (\"'=1+1\"): rename them",
        "'=1+1": "its id and '=1+1' are one once made safe (\"'=1+1\"): rename them",
        'a b': "its id and 'a_b' are one once made safe ('a_b'): rename them",
        'a_b': "its id and 'a b' are one once made safe ('a_b'): rename them",
        'points possible': "its id is the name of the gradebook's row of maxima"}
