"""The codebase's shape, which its readers rely on: each module a chapter read in one sitting, the
ideas below the bookkeeping that uses them, and no flag that --resume could silently mishandle."""
import ast
import glob
import os

import runs
import train
from conftest import ROOT

MODULES = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, '*.py')))
# The chapters on the ideas: none of them may lean on the bookkeeping or the programs above them.
IDEAS = ('model', 'data', 'schedule', 'augment', 'stats')


def imports(module):
    """The project's modules that `module` imports."""
    tree = ast.parse(open(os.path.join(ROOT, f'{module}.py')).read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split('.')[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split('.')[0])
    return names & set(MODULES)


def test_the_ideas_import_nothing_above_them():
    for module in IDEAS:
        above = imports(module) - set(IDEAS)
        assert not above, f'{module}.py imports {sorted(above)}, which are above it'


def test_no_import_cycles():
    def visit(module, path):
        for other in imports(module):
            assert other not in path, f'import cycle: {" -> ".join(path + [module, other])}'
            visit(other, path + [module])
    for module in MODULES:
        visit(module, [])


def test_no_function_is_longer_than_60_lines():
    long = []
    for module in MODULES:
        for node in ast.walk(ast.parse(open(os.path.join(ROOT, f'{module}.py')).read())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 60:
                long.append(f'{module}.{node.name}: {node.end_lineno - node.lineno + 1} lines')
    assert not long, long


def test_train_py_is_a_chapter_with_the_loop_before_the_flags():
    source = open(os.path.join(ROOT, 'train.py')).read()
    # A sitting's reading (the flags and main are a third of it); the handout's markers are not read.
    assert len([line for line in source.splitlines() if line.strip() not in ('# BEGIN SOLUTION', '# END SOLUTION')]) <= 310
    order = [node.name for node in ast.parse(source).body if isinstance(node, ast.FunctionDef)]
    loop = [order.index(name) for name in ('training_batches', 'train_one_epoch', 'evaluate', 'train')]
    assert loop == sorted(loop) and max(loop) < order.index('build_parser') < order.index('main'), order


def test_every_flag_is_a_training_flag_or_says_where_or_how_a_run_computes():
    """runs.TRAINING_FLAGS must name every flag that changes what a run learns: those are the ones
    --resume takes from config.json and a checkpoint must match. A new flag fails this test until
    it is put in one list or the other, so none joins either by default."""
    where = {'out', 'resume', 'force', 'device', 'data_dir', 'gpu_pool'}
    flags = {action.dest for action in train.build_parser()._actions if action.dest != 'help'}
    assert flags == set(runs.TRAINING_FLAGS) | set(runs.KEPT_ON_RESUME) | where
    assert not set(runs.TRAINING_FLAGS) & (set(runs.KEPT_ON_RESUME) | where)
