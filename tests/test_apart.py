"""course/apart.py, course/worker.py and course/wire.py promise that the checks call a student's
function in another process as if in their own: plain data crosses exactly, and nothing else does;
a module, an optimizer, a GradScaler, a generator and torch's global generator come back in the
state the call left them in, as in the checks' process; gradients flow back across; and whatever the
student's code does (raise, return what is not plain data, die, hang, answer nonsense) fails that
one call, with a message that says so, and the next call finds a worker again. Each is checked
against the same call made in this process."""
import contextlib
import copy
import io
import json
import math
import os
import shutil
import signal
import struct
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import data
import model
import stats
import train
from augment import sample_box
from course import apart, fence, handout, wire
from conftest import ROOT, TinyNet

BUBBLEWRAP = not fence.why_no_bubblewrap()

# In a handout (it has the record) the solutions are cut out: these tests call them across.
pytestmark = pytest.mark.skipif(os.path.exists(os.path.join(ROOT, handout.RECORD)),
                                reason='a handout: its exercises\' solutions are cut out')

# A chapter of the tests' own, beside the project's, for what no exercise does.
PROBE = '''
import os, time
import numpy as np
import torch


def echo(*args, **kwargs):
    return list(args), kwargs


def numpy_float():
    return np.float64(0.5)


class Always(float):
    __eq__ = lambda self, other: True


def always():
    return Always(0.5)


def parameter():
    return torch.nn.Parameter(torch.zeros(2))


def raises(kind, message):
    raise {'ValueError': ValueError, 'SystemExit': SystemExit, 'KeyboardInterrupt': KeyboardInterrupt}[kind](message)


def with_grad():
    return torch.ones(2, requires_grad=True) * 2


def in_place(x):
    x.mul_(2)


def dies():
    os._exit(3)


def sleeps():
    time.sleep(600)


def changes_len():
    import builtins
    builtins.len = lambda value: 0  # and the worker's own code calls len()
    return 1


def forks():
    child = os.fork()  # the child comes back from this call too, and would answer it, the worker's way
    return 'parent' if child else 'child'


def garbage():
    for fd in range(3, 32):  # whichever carries the answers
        try:
            os.write(fd, b'not a message at all, and long enough to be read as one' * 10)
        except OSError:
            pass
    time.sleep(600)
'''


@pytest.fixture(scope='module')
def worker(tmp_path_factory):
    """A worker of the project's chapters and the probe, fenced as grading fences it, as apart's."""
    work = tmp_path_factory.mktemp('apart') / 'work'
    probe = tmp_path_factory.mktemp('probe') / 'probe.py'
    probe.write_text(PROBE)
    chapters = {name: os.path.join(ROOT, name) for name in handout.CHAPTERS} | {
        'bookkeeping': os.path.join(ROOT, 'bookkeeping'), 'probe.py': str(probe)}
    os.symlink(__import__('tempfile').mkdtemp(prefix='apart-test-'), work)  # unfenced, reached by its path
    fence.prepare(str(work), chapters, 0)
    apart.WORKER = apart.Worker(str(work), {'limits': fence.Limits()._asdict(), 'slot': 0, 'sandboxed': BUBBLEWRAP})
    yield apart.WORKER
    apart.WORKER.stop()
    apart.WORKER = None
    shutil.rmtree(os.path.realpath(work))


def across(qualified, *args, **kwargs):
    return apart.call(qualified, args, kwargs)


# ---------------------------------------------------------------------------------------------
# Plain data.


def test_plain_data_crosses_exactly():
    value = [1, -2 ** 70, 0.1, math.inf, True, None, 'é\n', (3, [4.5]), {'a': {1: ()}},
             torch.arange(6, dtype=torch.bfloat16).reshape(2, 3), torch.zeros(0, 3), torch.tensor(True),
             torch.randn(2, 3, 4, 5).contiguous(memory_format=torch.channels_last)]
    read = wire.read(io.BytesIO(wire.encode(value)))
    assert [type(v) for v in read] == [type(v) for v in value] and read[:9] == value[:9]
    assert math.isnan(wire.read(io.BytesIO(wire.encode(math.nan))))
    for ours, theirs in zip(read[9:], value[9:]):
        assert torch.equal(ours, theirs) and ours.dtype == theirs.dtype and ours.stride() == theirs.stride()


class Always(float):
    __eq__ = lambda self, other: True


@pytest.mark.parametrize('value, named', [
    (Always(1.0), 'test_apart.Always, a subclass of float'), (int, 'type'),
    (torch.nn.Parameter(torch.zeros(1)), 'torch.nn.parameter.Parameter, a subclass of torch.Tensor'),
    ({1.5: 'x'}, 'a dict with a key of type float'), (object(), 'object'), (torch.zeros(1, dtype=torch.complex64),
                                                                          'a tensor of dtype torch.complex64')])
def test_what_is_not_plain_data_is_not_written_and_is_named(value, named):
    with pytest.raises(wire.NotPlain) as refused:
        wire.encode([{'x': value}])
    assert str(refused.value) == named


def message(tree, blob=b''):
    data = json.dumps(tree).encode()
    return io.BytesIO(struct.pack('>QQ', len(data), len(blob)) + data + blob)


@pytest.mark.parametrize('stream, says', [
    (io.BytesIO(struct.pack('>QQ', 2 ** 40, 0)), 'past the cap'),
    (io.BytesIO(struct.pack('>QQ', 2, 2 ** 40) + b'[]'), 'past the cap'),  # its tensors' bytes, claimed
    (io.BytesIO(struct.pack('>QQ', 10, 0) + b'[1,'), 'cut short'),
    (message({'a': 1}), 'a JSON object'),
    (message(['X', 1]), "the tag 'X'"),
    (message(['T', 'float32', [2], 'cpu', 0, 8, 'contiguous'], b'\0' * 4), 'not where, or as many as'),
    (message(['T', 'float32', [2], 'cpu', 0, 4, 'contiguous'], b'\0' * 4), 'not where, or as many as'),  # half its shape
    (message(['T', 'object', [1], 'cpu', 0, 8, 'contiguous'], b'\0' * 8), 'unknown dtype'),
    (message(['T', 'float32', [1], '/etc/passwd', 0, 4, 'contiguous'], b'\0' * 4), 'unknown device'),
    pytest.param(message(['T', 'float32', [1], 'cuda:0', 0, 4, 'contiguous'], b'\0' * 4), 'which this process does not have',
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason='a GPU here: a CUDA tensor is one to have')),
])
def test_what_is_not_a_message_is_refused_by_what_it_is(stream, says):
    with pytest.raises(wire.Broken, match=says):
        wire.read(stream)


def test_data_nested_past_the_cap_is_refused_both_ways():
    deep = 0
    for _ in range(40):
        deep = [deep]
    with pytest.raises(wire.NotPlain, match='nested'):
        wire.encode(deep)
    tree = 0
    for _ in range(40):
        tree = ['L', [tree]]
    with pytest.raises(wire.Broken, match='nested'):
        wire.read(message(tree))


# ---------------------------------------------------------------------------------------------
# A call across is a call here.


def test_a_function_of_numbers_gives_what_it_gives_here(worker):
    assert across('schedule.cosine_lr', 75, 300, 0.01) == __import__('schedule').cosine_lr(75, 300, 0.01)
    assert across('stats.welch', 0.95, 0.01, 2, 0.93, 0.002, 10) == stats.welch(0.95, 0.01, 2, 0.93, 0.002, 10)
    assert across('probe.echo', 1, (2.0, 'x'), k={'a': None}) == ([1, (2.0, 'x')], {'k': {'a': None}})


def test_torch_s_global_generator_goes_there_and_back(worker):
    """sample_box draws from the global generator: across, the same boxes, and the generator left
    where a call here leaves it."""
    torch.manual_seed(3)
    theirs = [across('augment.sample_box', 32, 32, (0.02, 0.33), (0.3, 3.3)) for _ in range(5)] + [torch.rand(1)]
    torch.manual_seed(3)
    ours = [sample_box(32, 32, (0.02, 0.33), (0.3, 3.3)) for _ in range(5)] + [torch.rand(1)]
    assert theirs[:5] == ours[:5] and torch.equal(theirs[5], ours[5])


def test_a_module_s_forward_updates_its_running_statistics_here_and_its_gradients_flow_back(worker):
    """A BasicBlock, made here, its forward run there in training mode: the output, BatchNorm's
    running statistics afterwards, and the gradients of every weight and of the input, as here."""
    torch.manual_seed(0)
    block = model.BasicBlock(8, 16, 2)
    mine = copy.deepcopy(block)
    block.__dict__[apart.MADE_WITH] = ((8, 16, 2), {})
    x = torch.randn(4, 8, 12, 12, requires_grad=True)
    x_mine = x.detach().clone().requires_grad_()
    out, expected = apart.call('model.BasicBlock.forward', [block, x], {}), mine(x_mine)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    for name, buffer in mine.named_buffers():
        torch.testing.assert_close(dict(block.named_buffers())[name], buffer, rtol=0, atol=1e-6, msg=name)
    (out ** 2).sum().backward()
    (expected ** 2).sum().backward()
    torch.testing.assert_close(x.grad, x_mine.grad, rtol=1e-5, atol=1e-6)
    for (name, p), q in zip(block.named_parameters(), mine.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6, msg=name)


def test_an_epoch_across_trains_the_model_optimizer_and_scaler_here(worker):
    """train_one_epoch in fp16 on TinyNet, with train.build's fused SGD and GradScaler: across, the
    weights, the momentum and the scale afterwards are those of the same call here, to the bit."""
    def build():
        torch.manual_seed(0)
        net = TinyNet()
        sgd = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, fused=True)
        return net, sgd, torch.amp.GradScaler('cpu')
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(8, 3, 32, 32, generator=g) * (1e6 if step == 1 else 1), torch.randint(0, 10, (8,), generator=g))
               for step in range(3)]
    autocast = torch.autocast('cpu', dtype=torch.float16)
    (theirs, their_sgd, their_scaler), (ours, our_sgd, our_scaler) = build(), build()
    their_result = apart.call('train.train_one_epoch', [theirs, their_sgd, their_scaler, batches, autocast], {})
    our_result = train.train_one_epoch(ours, our_sgd, our_scaler, batches, autocast)
    assert their_result == our_result and their_scaler.get_scale() == our_scaler.get_scale() == 2.0 ** 15
    for (name, a), b in zip(theirs.state_dict().items(), ours.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True, msg=name)  # the overflow's nan, in both
    for a, b in zip(their_sgd.state.values(), our_sgd.state.values()):
        assert torch.equal(a['momentum_buffer'], b['momentum_buffer'])


def test_the_modes_a_call_set_are_the_modes_here(worker):
    """evaluate() calls model.eval() there: here too, afterwards, every part of the model is in
    evaluation mode; and train_one_epoch()'s model.train() puts every part back in training mode.
    The results and the state afterwards are those of the same calls made here."""
    torch.manual_seed(0)
    net, images, labels = TinyNet(), torch.randn(6, 3, 32, 32), torch.arange(6) % 10
    mine = copy.deepcopy(net)
    off = torch.autocast('cpu', enabled=False)
    theirs = apart.call('train.evaluate', [net, images, labels, torch.zeros(3), torch.ones(3), off], {})
    ours = train.evaluate(mine, images, labels, torch.zeros(3), torch.ones(3), off)
    modes = lambda model: [part.training for part in model.modules()]
    assert modes(net) == modes(mine) == [False] * len(modes(mine))
    assert theirs[:2] == ours[:2] and torch.equal(theirs[2], ours[2])
    batches = [(images, labels)]
    apart.call('train.train_one_epoch', [net, torch.optim.SGD(net.parameters(), lr=0.1), torch.amp.GradScaler('cpu', enabled=False),
                                         batches, off], {})
    train.train_one_epoch(mine, torch.optim.SGD(mine.parameters(), lr=0.1), torch.amp.GradScaler('cpu', enabled=False), batches, off)
    assert modes(net) == modes(mine) == [True] * len(modes(mine))
    for (name, a), b in zip(net.state_dict().items(), mine.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_tensor_that_requires_grad_there_comes_back_a_plain_tensor(worker):
    """What the student's code made of it there is not this process's autograd graph: only its values cross."""
    result = across('probe.with_grad')
    assert type(result) is torch.Tensor and not result.requires_grad and torch.equal(result, torch.full((2,), 2.0))


def test_a_tensor_changed_in_place_there_is_changed_here(worker):
    x = torch.ones(3)
    across('probe.in_place', x)
    assert torch.equal(x, torch.full((3,), 2.0))


# ---------------------------------------------------------------------------------------------
# What the student's code does costs that call only.


@pytest.mark.parametrize('function, says', [
    ('numpy_float', 'numpy_float returned or left numpy.float64'),
    ('always', 'always returned or left probe.Always, a subclass of float'),
    ('parameter', 'parameter returned or left torch.nn.parameter.Parameter, a subclass of torch.Tensor')])
def test_what_is_not_plain_data_fails_the_call_naming_its_type(worker, function, says):
    with pytest.raises(apart.CannotCross, match=says):
        across(f'probe.{function}')


def test_an_exception_comes_back_as_its_type_cut_short_and_never_as_one_that_stops_the_checks(worker):
    with pytest.raises(ValueError) as raised:
        across('probe.raises', 'ValueError', 'x' * 5000)
    line = PROBE.splitlines().index("    raise {'ValueError': ValueError, 'SystemExit': SystemExit, 'KeyboardInterrupt': "
                                    "KeyboardInterrupt}[kind](message)") + 1
    assert str(raised.value) == 'x' * 300 + f' (probe.py, line {line})'
    for kind in ('SystemExit', 'KeyboardInterrupt'):
        with pytest.raises(apart.RaisedApart, match=f'builtins.{kind}: no'):
            across('probe.raises', kind, 'no')
    said = lambda kind, module: apart.reraised({'raised': kind, 'module': module, 'message': 'm', 'where': ''})
    assert type(said('DataError', 'data')) is data.DataError  # a chapter's own, as this process has it
    assert type(said('Evil', 'os')) is apart.RaisedApart and str(said('Evil', 'os')) == 'os.Evil: m'


@pytest.mark.parametrize('function, why', [('dies', 'exited with status 3'),
                                           ('garbage', 'answered what is not a message|cut short|past the cap|not a message')])
def test_a_worker_that_dies_or_answers_nonsense_fails_the_call_and_a_new_one_answers_the_next(worker, function, why):
    with pytest.raises(apart.WorkerLost, match=why):
        across(f'probe.{function}')
    assert across('schedule.cosine_lr', 0, 10, 0.1) == 0.1


def test_a_builtin_a_student_s_call_changed_is_put_back_before_the_worker_answers_again(worker):
    assert across('probe.changes_len') == 1
    assert across('probe.echo', [1, 2], k='x') == ([[1, 2]], {'k': 'x'})


def test_a_child_the_student_s_code_forks_never_answers(worker):
    """A process forked in a call returns from it too, into the worker's loop: it ends there, and
    only the worker answers, so no later call reads the child's answer to an earlier one."""
    assert across('probe.forks') == 'parent'
    assert across('probe.echo', 1) == ([1], {}) and across('probe.forks') == 'parent'


class Late(BaseException):
    """What the recorder's alarm raises at a test's time limit (a TestTimeout), here."""


@contextlib.contextmanager
def time_limit(seconds):
    """An alarm in `seconds` that raises Late, as the recorder's does."""
    def late(signum, frame):
        raise Late()
    previous = signal.signal(signal.SIGALRM, late)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_a_call_past_the_test_s_time_limit_kills_the_worker_and_a_new_one_answers_the_next(worker):
    assert across('schedule.cosine_lr', 0, 10, 0.1) == 0.1  # a worker up and answering
    with time_limit(2), pytest.raises(Late):
        across('probe.sleeps')
    assert worker.process is None
    assert across('schedule.cosine_lr', 0, 10, 0.1) == 0.1


def test_a_new_worker_s_start_is_not_counted_in_the_test_s_limit(worker):
    """A worker's start (torch's import) takes seconds, more on a busy machine: the grader's time,
    not the student's. A test with a second left gets its answer from a new worker, and what was
    left of its limit still holds for the call itself."""
    worker.stop()
    with time_limit(1):  # a fenced worker's start took 2.1 to 2.3 s here, beside make mutants
        assert across('schedule.cosine_lr', 0, 10, 0.1) == 0.1
        assert 0 < signal.getitimer(signal.ITIMER_REAL)[0] <= 1
        with pytest.raises(Late):
            across('probe.sleeps')


# ---------------------------------------------------------------------------------------------
# Which tests run apart.


def test_only_the_tests_that_grade_run_apart_the_hidden_ones_last(monkeypatch):
    """Of test_schedule.py's, test_stats.py's and test_train.py's tests as pytest collects them,
    those whose marks name exactly one exercise (not a whole run's, which names six), in pytest's
    order, but cosine_lr's hidden tests after the public ones of the files after it: no public
    test's message can carry what a hidden test handed the student's code."""
    class Collected:
        def pytest_collection_finish(self, session):
            self.items = list(session.items)
    collected = Collected()
    monkeypatch.delenv('PYTEST_ADDOPTS', raising=False)  # this pytest's -k is not the collection's
    files = [os.path.join(ROOT, 'tests', name) for name in ('test_schedule.py', 'test_stats.py', 'test_train.py')]
    assert pytest.main(['--collect-only', '-q', '-p', 'no:cacheprovider', *files], plugins=[collected]) == 0
    one = [item for item in collected.items if len([n for mark in item.iter_markers('exercise') for n in mark.args]) == 1]
    whole_run = [item for item in collected.items if item.name == 'test_a_run_is_its_loop_written_out_in_plain_pytorch[setting0]']
    assert len(whole_run) == 1 and whole_run[0] not in one
    hidden = [item for item in one if item.name.startswith('test_cosine_falls_from_lr_max')]
    assert len(hidden) == 3 and one.index(hidden[-1]) < len(one) - 1  # not last, as pytest has them
    assert apart.graded(collected.items) == [item for item in one if item not in hidden] + hidden
