"""The figures of the docs that a test can hold, held: how many tests run only on a CUDA GPU, the
packages .venv gets, and the README's list of make targets. (The others, times and counts made by a
command, name the command and the machine that made them.)"""
import os
import re
import subprocess
import sys

from conftest import ROOT

COUNTER = '''
import test_docs
def pytest_collection_finish(session):
    print('CUDA tests:', len(test_docs.cuda_marked(session.items)))
'''


def cuda_marked(items):
    return [item for item in items if any(mark.name == 'skipif' and str(mark.kwargs.get('reason', '')).startswith(
        'no CUDA GPU here') for mark in item.iter_markers())]


def test_the_number_of_cuda_tests_is_the_one_the_docs_give(request, tmp_path):
    """docs/tests.md says how many tests run only where torch sees a CUDA GPU (and are skipped
    elsewhere): pytest's collection, counting the tests that carry conftest's CUDA mark. In a run of
    the whole suite, this session's; else a collection of its own."""
    items, option = request.session.items, request.config.option
    every_file = {name for name in os.listdir(os.path.join(ROOT, 'tests')) if name.startswith('test_') and name.endswith('.py')}
    if {item.path.name for item in items} >= every_file and not (option.markexpr or option.keyword or option.deselect):
        found = len(cuda_marked(items))
    else:
        (tmp_path / 'cuda_counter.py').write_text(COUNTER)
        collected = subprocess.run([sys.executable, '-m', 'pytest', '--collect-only', '-q', '-p', 'cuda_counter', 'tests'],
                                   cwd=ROOT, capture_output=True, text=True, env=os.environ | {'PYTHONPATH': f'{tmp_path}:{os.path.join(ROOT, "tests")}'})
        found = int(re.search(r'CUDA tests: (\d+)', collected.stdout).group(1))
    said = re.findall(r'(\d+) tests run only where torch sees a CUDA GPU', open(os.path.join(ROOT, 'docs', 'tests.md')).read())
    assert said == [str(found)], (found, said)


def test_the_readme_names_what_venv_gets():
    """The README's list of what .venv holds is requirements.txt's."""
    readme = open(os.path.join(ROOT, 'README.md')).read()
    named = re.search(r'`\.venv` holds what `requirements.txt` names: (.+?)\.', readme, re.S).group(1)
    listed = set(re.findall(r'\w+', named.replace('for the notebook\'s test', ''))) - {'and'}
    required = {re.split(r'[>=<]', line)[0].strip() for line in open(os.path.join(ROOT, 'requirements.txt'))
                if line.strip() and not line.startswith('#')}
    assert listed == required


def test_the_readme_names_every_make_target():
    """Every target of the Makefile, and no other, is in the README: the experiments in its table,
    the others in the line after it."""
    readme = open(os.path.join(ROOT, 'README.md')).read()
    named = set(re.findall(r'`make ([\w-]+)`', readme))
    makefile = open(os.path.join(ROOT, 'Makefile')).read()
    phony = set(re.search(r'^\.PHONY: (.+)$', makefile, re.M).group(1).split())
    experiments = set(subprocess.run([sys.executable, '-m', 'bookkeeping.study'], cwd=ROOT, capture_output=True,
                                     text=True, check=True).stdout.split('$(call experiment,')[1:])
    experiments = {call.split(',')[0] for call in experiments}
    assert named == phony | experiments, (named ^ (phony | experiments))
