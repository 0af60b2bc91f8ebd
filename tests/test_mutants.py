"""tests/mutants.py and its list, tests/mutants.toml, promise `make mutants`: every bug of the list
can be made in the code as it is now, each its text found exactly once and a change that is still
Python; a list that is not one, and a name not in it, are one line and exit status 1; a bug whose
code moved is reported as moved, never run; and the tier's first failure is named, unless it
passes when run again alone. These run no quick tier: `make mutants` does (docs/tests.md)."""
import ast
import os

import pytest

import mutants
from course import handout
from conftest import ROOT

# The list quotes the solutions it breaks, and is left out of a handout (course/handout.py).
pytestmark = pytest.mark.skipif(os.path.exists(os.path.join(ROOT, handout.RECORD)),
                                reason='a handout: the list of bugs is left out with the solutions it quotes')


def test_every_mutant_can_be_made_in_the_code_as_it_is():
    """Each bug's text is in its file exactly once, and its test files are there. When this fails, the
    code moved since the bug was written: give the bug the code's new text in tests/mutants.toml."""
    listed = mutants.read_list()
    moved = {m.name: mutants.moved(m) for m in listed if mutants.moved(m)}
    assert not moved, f'update tests/mutants.toml, whose bugs no longer fit the code: {moved}'
    assert len(listed) >= 50 and len({m.file for m in listed}) >= 20


def test_every_mutant_is_a_bug_not_a_syntax_error():
    """With its change made, each Python file still parses, and still differs from the code."""
    for m in mutants.read_list():
        text = open(os.path.join(ROOT, m.file)).read()
        changed = text.replace(m.find, m.replace)
        assert changed != text, m.name
        if m.file.endswith('.py'):
            ast.parse(changed, m.file)
        assert m.bug.strip() and all(test.startswith('tests/test_') and test != mutants.ITSELF for test in m.tests), m.name


@pytest.mark.parametrize('text, says', [
    ('[[mutant]]\nname = "a"\nfile = "train.py"\nfind = "x"\nreplace = "y"\n', 'it needs bug'),
    ('[[mutant]]\nname = "a"\nfile = "train.py"\nfind = "x"\nreplace = "y"\nbug = "b"\ntest = []\n', 'no field test'),
    ('[[mutant]]\nname = "a"\nfile = "train.py"\nfind = "x"\nreplace = "x"\nbug = "b"\n', 'find must be text that replace changes'),
    ('[[mutant]]\nname = "A b"\nfile = "train.py"\nfind = "x"\nreplace = "y"\nbug = "b"\n', 'a name of its own'),
    ('[mutant]\nname = "a"\n', 'it has no [[mutant]]'),
    ('[[mutant]]\nname = "a\n', 'Illegal character'),
])
def test_a_list_that_is_not_one_is_one_line_and_status_1(tmp_path, capsys, text, says):
    (tmp_path / 'mutants.toml').write_text(text)
    with pytest.raises(SystemExit) as exit_info:
        mutants.main(['--list', str(tmp_path / 'mutants.toml')])
    message = str(exit_info.value.code)  # sys.exit with a message: exit status 1
    assert message.startswith(f'mutants.py: error: {tmp_path / "mutants.toml"}') and says in message, message
    assert len(message.splitlines()) == 1 and capsys.readouterr().out == ''


def test_a_name_not_in_the_list_is_one_line_and_status_1():
    with pytest.raises(SystemExit) as exit_info:
        mutants.main(['no-such-bug'])
    assert str(exit_info.value.code) == f"mutants.py: error: no mutant 'no-such-bug' in {mutants.LIST}"


def test_a_mutant_whose_code_moved_is_moved_and_never_run():
    """Its text found twice, or not at all, or its file gone: moved, at once, with why."""
    gone = mutants.Mutant('gone', 'train.py', 'no such line of train.py', 'x', 'a bug', ())
    twice = gone._replace(find='import')
    nowhere = gone._replace(file='trainer.py')
    verdicts = [mutants.judge(m) for m in (gone, twice, nowhere)]
    assert [v.verdict for v in verdicts] == ['moved'] * 3 and all(v.seconds == 0 for v in verdicts)
    assert verdicts[0].why == 'its text is in train.py 0 times, not once: the code changed; update tests/mutants.toml'
    assert verdicts[1].why.startswith('its text is in train.py ') and 'times, not once' in verdicts[1].why
    assert verdicts[2].why.startswith('trainer.py is not there')


def test_the_first_failure_is_named_and_one_that_passes_alone_is_left_out(tmp_path):
    """A project of three tests: the first fails once, as a test of timings might on a busy machine,
    then passes alone, and is left out; the second fails every time, and is the one named."""
    (tmp_path / 'project').mkdir()
    (tmp_path / 'project' / 'test_three.py').write_text(
        'import os\n\n\ndef test_by_chance():\n    if not os.path.exists("once"):\n        open("once", "w").close()\n'
        '        assert False\n\n\ndef test_a_bug():\n    assert 1 + 1 == 3\n\n\ndef test_fine():\n    pass\n')
    by_chance = []
    failed = mutants.first_failure(str(tmp_path / 'project'), str(tmp_path / 'tmp'), ['test_three.py'], by_chance)
    assert failed == 'test_three.py::test_a_bug' and by_chance == ['test_three.py::test_by_chance']
    assert mutants.first_failure(str(tmp_path / 'project'), str(tmp_path / 'tmp'), ['test_three.py::test_fine'], []) == ''
