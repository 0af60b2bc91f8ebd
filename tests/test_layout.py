"""The codebase's shape, which its readers rely on: the chapters at the top in the reading order and
nothing else there that asks to be read; the machinery in packages below or above them, and no
import back up; each module a chapter read in one sitting, top to bottom."""
import ast
import glob
import os
import re

from bookkeeping import CHAPTERS, flags
from conftest import ROOT

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
