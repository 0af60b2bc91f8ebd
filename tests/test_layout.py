"""The codebase's shape, which its readers rely on: the chapters at the top in the reading order and
nothing else there that asks to be read; the machinery in packages below or above them, and no
import back up; each module a chapter read in one sitting, top to bottom."""
import ast
import glob
import os
import re

import pytest

from bookkeeping import CHAPTERS, flags
from conftest import ROOT
from course import handout

PACKAGES = ('bookkeeping', 'runner', 'course')
# Every module of the project, by its import name: 'train', 'bookkeeping.runs', ...
MODULES = sorted([os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, '*.py'))] +
                 [f'{package}.{os.path.basename(p)[:-3]}' for package in PACKAGES
                  for p in glob.glob(os.path.join(ROOT, package, '*.py')) if not p.endswith('__init__.py')])
# The chapters on the ideas: none of them may lean on anything but each other.
IDEAS = ('model', 'data', 'schedule', 'augment', 'stats')


def source(module):
    return open(os.path.join(ROOT, *module.split('.')) + '.py').read()


def imports(module):
    """The project's modules that `module` imports, by import name; a package alone is its __init__."""
    names = set()
    for node in ast.walk(ast.parse(source(module))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f'{node.module}.{alias.name}' for alias in node.names}
    return {name for name in names if name in MODULES or name in PACKAGES}


def layer(module):
    """0 the ideas, 1 bookkeeping/, 2 the other chapters, 3 runner/ and course/."""
    top = module.split('.')[0]
    return 0 if module in IDEAS else 1 if top == 'bookkeeping' else 3 if top in ('runner', 'course') else 2


def test_the_top_level_shows_the_chapters_and_nothing_else_to_read():
    """A student who lists the project sees the chapters, in CHAPTERS, and beside them only the
    study, the Makefile, the README, the requirements, the docs, the tests and the packages."""
    tracked = {name for name in os.listdir(ROOT) if not name.startswith('.')}
    expected = set(CHAPTERS) | {'study.toml', 'Makefile', 'README.md', 'requirements.txt', 'docs', 'tests', *PACKAGES}
    assert {n for n in tracked if n.endswith('.py') or n.endswith('.md')} <= expected
    assert {os.path.basename(p) for p in glob.glob(os.path.join(ROOT, '*.py'))} == set(CHAPTERS)


def test_a_course_may_host_and_cite_it():
    """An MIT LICENSE, and a CITATION.cff that cites this project and the report it reproduces,
    study.toml's source."""
    from bookkeeping import study
    assert open(os.path.join(ROOT, 'LICENSE')).readline().strip() == 'MIT License'
    citation = open(os.path.join(ROOT, 'CITATION.cff')).read()
    assert 'cff-version: 1.2.0' in citation and 'license: MIT' in citation
    assert study.load().source.split(':')[0].removesuffix(' (2022)') in citation


def test_the_readme_s_reading_order_is_the_list_of_chapters():
    readme = open(os.path.join(ROOT, 'README.md')).read()
    section = readme.split('## Reading order', 1)[1].split('\n## ', 1)[0]
    assert re.findall(r'^\| \d+ \| `(\w+\.py)` \|', section, re.M) == list(CHAPTERS)


def test_no_import_runs_back_up():
    """The ideas import only ideas, and bookkeeping.environment, which a chapter run as a program
    asks, before torch is imported, what its Python lacks; data.py also imports bookkeeping.download,
    the one call that puts CIFAR-10's files in place before it reads them (the download, its md5
    sum, partial files and the lock are not the idea); bookkeeping/ imports no chapter; the
    chapters import neither runner/ nor course/; and runner/ and course/ import nothing of each other."""
    for module in MODULES:
        for other in imports(module):
            if other in PACKAGES:
                other = f'{other}.__init__'
            if layer(module) == 0 and (other in ('bookkeeping.environment', 'bookkeeping.__init__') or
                                       (module, other) == ('data', 'bookkeeping.download')):
                continue
            assert layer(other) <= layer(module) or other.startswith(module.split('.')[0] + '.'), \
                f'{module} imports {other}, which is above it'
            if layer(module) == 3:
                assert other.split('.')[0] in (module.split('.')[0], 'bookkeeping') or layer(other) < 3, (module, other)


def test_no_import_cycles():
    def visit(module, path):
        for other in imports(module) - set(PACKAGES):
            assert other not in path, f'import cycle: {" -> ".join(path + [module, other])}'
            visit(other, path + [module])
    for module in MODULES:
        visit(module, [])


def test_no_function_is_longer_than_60_lines():
    long = []
    for module in MODULES:
        for node in ast.walk(ast.parse(source(module))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 60:
                long.append(f'{module}.{node.name}: {node.end_lineno - node.lineno + 1} lines')
    assert not long, long


def test_every_module_reads_top_to_bottom():
    """Nothing of a module is used more than 150 lines before it is defined: the idea first, and its
    helpers soon after it, not a name to look for at the other end of the file."""
    early = []
    for module in MODULES:
        tree = ast.parse(source(module))
        defined = {node.name: node.lineno for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
        defined |= {target.id: node.lineno for node in tree.body if isinstance(node, ast.Assign)
                    for target in node.targets if isinstance(target, ast.Name)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.lineno < defined.get(node.id, 0) - 150:
                early.append(f'{module}: {node.id} used at line {node.lineno}, defined at {defined[node.id]}')
    assert not early, early


def test_train_py_is_a_chapter_with_the_loop_before_main():
    source_ = source('train')
    # A sitting's reading; the handout's markers are not read.
    assert len([line for line in source_.splitlines() if line.strip() not in ('# BEGIN SOLUTION', '# END SOLUTION')]) <= 300
    order = [node.name for node in ast.parse(source_).body if isinstance(node, ast.FunctionDef)]
    loop = [order.index(name) for name in ('training_batches', 'train_one_epoch', 'evaluate', 'train')]
    assert loop == sorted(loop) and max(loop) < order.index('main'), order


def test_every_flag_is_declared_once_with_its_kind():
    """Each flag of train.py is a line of flags.FLAGS, of one kind: what a run learns (kept on
    resume, compared by make) or how it computes; only the latter may be kept on resume as a
    computing choice. The parser has exactly those flags."""
    parsed = {action.dest for action in flags.parser()._actions if action.dest != 'help'}
    assert parsed == set(flags.BY_NAME) and len(flags.BY_NAME) == len(flags.FLAGS)
    assert all(flag.kind in (flags.LEARNS, flags.COMPUTES) for flag in flags.FLAGS)
    assert all(flag.kind == flags.COMPUTES for flag in flags.FLAGS if flag.kept)
    # What the report's runs differ in, the subsets and the precision make the run; the kernels only compute it.
    assert {'lr', 'epochs', 'batch_size', 'momentum', 'cosine', 'wd', 'erase_p', 'erase_scale', 'erase_ratio',
            'no_crop_flip', 'seed', 'train_subset', 'eval_subset', 'precision'} <= set(flags.TRAINING)
    assert set(flags.KEPT_ON_RESUME) == {'compile', 'deterministic'}


def plumbing(chapter):
    """The non-blank lines of a chapter, and those of them that are plumbing: a line that imports or
    names the machinery (bookkeeping/, runner/, course/: the run folder, the device and precision,
    the flags, the layout of tables and figures), with the comment lines just above it; and main(),
    with the `if __name__ == '__main__'` block. Everything else teaches: the model, the data,
    augmentation, the schedule, the loop, the statistics, and what explains them."""
    text = source(chapter.removesuffix('.py'))
    tree, lines = ast.parse(text), text.splitlines()
    machinery, found = set(), set()
    span = lambda node, end=None: set(range(node.lineno, (end or node).end_lineno + 1))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
            if module and module.split('.')[0] in PACKAGES:
                found |= span(node)
                machinery |= {(alias.asname or alias.name).split('.')[0] for alias in node.names}
    names = lambda node: any(isinstance(n, ast.Name) and n.id in machinery for n in ast.walk(node))
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == 'main' or isinstance(node, ast.If) and \
                isinstance(node.test, ast.Compare) and getattr(node.test.left, 'id', '') == '__name__':
            found |= span(node)
        elif isinstance(node, (ast.For, ast.While, ast.If, ast.With)):  # the head only: its body is lines of its own
            head = node.iter if isinstance(node, ast.For) else node.items[-1].context_expr if isinstance(node, ast.With) \
                else node.test
            found |= span(node, head) if names(head) else set()
        elif isinstance(node, ast.stmt) and not isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.Try)) and names(node):
            found |= span(node)
    for number in sorted(found):  # a comment just above a line of plumbing says why it is there
        while number > 1 and lines[number - 2].strip().startswith('#'):
            number -= 1
            found.add(number)
    nonblank = {number for number, line in enumerate(lines, 1) if line.strip()}
    return nonblank, found & nonblank


@pytest.mark.skipif(os.path.exists(os.path.join(ROOT, handout.RECORD)),
                    reason="a handout: its blanks are shorter than the solutions; the project's chapters are the ones counted")
@pytest.mark.parametrize('chapter', CHAPTERS)
def test_each_chapter_is_at_most_15_percent_plumbing(chapter):
    """A chapter teaches its idea: at most 15% of its lines lean on the machinery (plumbing() says
    how they are counted; docs/tests.md gives each chapter's count). What a chapter needs of the run
    folder, the hardware or the layout is one call whose name says what it does."""
    nonblank, found = plumbing(chapter)
    assert len(found) <= 0.15 * len(nonblank), f'{chapter}: {len(found)} of {len(nonblank)} lines are plumbing'
    counted = f'| {chapter} | {len(nonblank) - len(found)} | {len(found)} | {100 * len(found) / len(nonblank):.1f}% |'
    assert counted in open(os.path.join(ROOT, 'docs', 'tests.md')).read(), f'docs/tests.md should say: {counted}'


def test_no_exercise_names_the_machinery():
    """What a student writes between # BEGIN SOLUTION and # END SOLUTION is the idea alone: no
    name of bookkeeping/, runner/ or course/, nor anything a chapter imported from them."""
    for exercise in handout.exercises():
        lines = source(exercise.chapter.removesuffix('.py')).splitlines()
        machinery = {alias.asname or alias.name for node in ast.walk(ast.parse('\n'.join(lines)))
                     if isinstance(node, ast.ImportFrom) and node.module and node.module.split('.')[0] in PACKAGES
                     for alias in node.names} | set(PACKAGES)
        block = '\n'.join(lines[exercise.lines[0] + 1:exercise.lines[1]])
        named = {word for word in re.findall(r'\b\w+\b', block)} & machinery
        assert not named, (exercise.name, named)
