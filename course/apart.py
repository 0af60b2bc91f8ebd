"""The checks apart from the code they check. When a class is graded, the tests run in a process
that never imports a student's chapter: it imports the handout's own chapters, blank, and replaces
each exercise of the handout in them by a proxy, which asks a worker process (course/worker.py),
fenced (course/fence.py), to call the student's function, and hands back what it answered: plain
data (course/wire.py), checked and capped. The tests are the project's, unchanged: the proxy is
what `from schedule import cosine_lr` gets, and what report.py's `from stats import welch` gets.

    python -m pytest -p course.apart --apart CHAPTERS --apart-fence JSON -p course.recorder ... tests

In a student's own copy (make test, make grade) none of this is loaded: the tests import the
chapters and call them in their own process, as the code reads.

A call across does what a call in this process would. Plain data crosses as it is. A module, an
optimizer, a GradScaler, a torch.Generator or an autocast crosses as a description, from which the
worker builds its own; afterwards the state the call left it in comes back and is written into
this process's object: the weights an epoch trained, BatchNorm's running statistics, SGD's
momentum, the scaler's scale, a generator's position. torch's global generator goes and comes
back too. A result that is a float tensor keeps its place in autograd: its backward asks the
worker for the gradients (Across).

What cannot come back fails the test, and says why: a value that is not plain data (named by its
type), an exception of the student's code (its type and message, cut short), a worker that dies
or answers nonsense (a new one starts for the next call), or one still busy at the test's time
limit (course/recorder.py's alarm interrupts the wait, and the worker is killed). A new worker's
start is not counted in that limit: it runs no student code (the chapters are imported at their
first call), and it is waited for with the alarm paused (Worker.wait_ready).

Only the tests that grade run here: those marked with exactly one exercise, the hidden ones last,
so that no public test's message can carry what a hidden test handed the student's code.
"""
import builtins
import contextlib
import functools
import importlib
import json
import os
import signal
import subprocess
import sys
import types

import torch
from torch import nn

from course import fence, handout, wire
from course.worker import TinyNet

MADE_WITH = '_made_with'  # a chapter's module keeps the arguments it was made with here, for the worker to make its own


class CannotCross(Exception):
    """What a test hands a student's function, or what the function returns, is not plain data and
    no object the worker knows how to build."""


class RaisedApart(Exception):
    """The student's code raised an exception of a type this process does not have, or should not
    raise (KeyboardInterrupt, SystemExit): its name and message."""


class WorkerLost(Exception):
    """The worker ended, or answered what is not an answer, during a call."""


WORKER = None  # the worker, where the checks run apart


def pytest_addoption(parser):
    parser.addoption('--apart', help='folder of the chapters the worker imports: the tests call the exercises there')
    parser.addoption('--apart-fence', default='{}', help="the worker's fence, as JSON: limits, slot, sandboxed")


def pytest_configure(config):
    global WORKER
    if config.getoption('apart'):
        WORKER = Worker(config.getoption('apart'), json.loads(config.getoption('apart_fence')))
        WORKER.start()  # it imports torch while the tests are collected
        install(os.getcwd())  # the instructor's copy, where the checks run


def pytest_unconfigure(config):
    if WORKER:
        WORKER.stop()


def pytest_collection_modifyitems(config, items):
    if config.getoption('apart'):
        kept = graded(items)
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = kept


def graded(items):
    """Of pytest's `items`, the tests that grade: those whose exercise marks name exactly one
    exercise. The public ones first, then those in a hidden block of their test file, each in
    pytest's order."""
    own = [item for item in items if len([n for mark in item.iter_markers('exercise') for n in mark.args]) == 1]
    hidden = {}  # each test file's lines in its hidden blocks
    for item in own:
        if item.path not in hidden:
            hidden[item.path] = handout.hidden_lines(item.path.read_text().splitlines())
    return sorted(own, key=lambda item: item.location[1] + 1 in hidden[item.path])


# ---------------------------------------------------------------------------------------------
# The worker, started with the checks, and again at the next call after it ended.


class Worker:
    """The worker, and what this process knows of it: whether it has answered a ping since it
    started (`ready`), and torch's global generator state the two last agreed on (`synced`), which
    need not cross again while neither has drawn from it (None when not known: a new worker's own
    is another)."""

    def __init__(self, chapters, settings):
        self.chapters, self.settings, self.process, self.synced, self.ready = chapters, settings, None, None, False

    def rng_to_send(self, state):
        """This process's generator state for a request: None where the worker has it already."""
        return None if self.synced is not None and torch.equal(state, self.synced) else state

    def take_rng(self, state):
        """The worker's generator state after a call, made this process's (None: unchanged)."""
        if state is None:
            self.synced = torch.get_rng_state()
            return
        if type(state) is not torch.Tensor or state.dtype != torch.uint8 or state.shape != torch.get_rng_state().shape:
            raise WorkerLost('the worker answered a generator state that is not one')
        torch.set_rng_state(state)
        self.synced = state

    def ask(self, request):
        """The worker's answer to one request. Whatever interrupts the wait (the test's time limit,
        the worker's end, an answer that is not one), the worker is killed and a new one starts at
        the next request."""
        try:
            message = wire.encode(request)
        except wire.NotPlain as e:
            raise CannotCross(f'a test hands the student\'s function {e}, which cannot be handed to the worker') from None
        if self.process is None:
            self.start()
            if request.get('rng', 0) is None:  # the new worker has its own generator state
                message = wire.encode(request | {'rng': torch.get_rng_state()})
        try:
            if not self.ready:
                self.wait_ready()
            self.process.stdin.write(message)
            self.process.stdin.flush()
            return wire.read(self.process.stdout)
        except (EOFError, BrokenPipeError, wire.Broken) as e:
            why = self.stop(wait=0 if isinstance(e, wire.Broken) else 10)  # its pipe closes before it ends: on a busy machine, seconds before
            raise WorkerLost(f'the process running the student\'s code {why}'
                             + (f' ({e})' if isinstance(e, wire.Broken) else '')) from None
        except BaseException:
            self.stop()
            raise

    def start(self):
        self.process, self.synced = fence.start_worker(self.chapters, **self.settings, threads=torch.get_num_threads()), None
        self.ready = False

    def wait_ready(self):
        """Wait for a new worker to answer a ping: its start (torch's import) is the grader's time,
        not the student's, so the test's time limit (the recorder's alarm) is paused meanwhile, and
        what was left of it runs on after. A worker that never answers is stopped by the grader's
        limit on the whole submission (--submission-timeout), which costs that submission's row."""
        left, _ = signal.setitimer(signal.ITIMER_REAL, 0)
        try:
            wire.write(self.process.stdin, {'ping': True})
            wire.read(self.process.stdout)
            self.ready = True
        finally:
            if left:
                signal.setitimer(signal.ITIMER_REAL, left)

    def stop(self, wait=0):
        """Kill the worker, after `wait` seconds for it to end by itself; how it had ended, in a few words."""
        if self.process is None:
            return 'was not running'
        try:
            ended = self.process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            ended = None
        fence.stop_worker(self.process)
        self.process, self.synced = None, None
        return fence.ended(ended) if ended is not None else 'stopped answering'


# ---------------------------------------------------------------------------------------------
# The proxies, in the handout's chapters.


def install(root):
    """Each exercise of the handout in `root` replaced, wherever a chapter has it, by its proxy; and
    every module class of a chapter made to remember the arguments it was made with."""
    chapters = {name.removesuffix('.py') for name in handout.CHAPTERS}
    for exercise in handout.exercises(root):
        importlib.import_module(exercise.chapter.removesuffix('.py'))
    loaded = [module for name, module in sys.modules.items() if name in chapters]
    for module in loaded:
        for cls in vars(module).values():
            if isinstance(cls, type) and issubclass(cls, nn.Module) and cls.__module__ == module.__name__:
                cls.__init__ = remembering(cls.__init__)
    for exercise in handout.exercises(root):
        owner = sys.modules[exercise.chapter.removesuffix('.py')]
        *outer, name = exercise.name.split('.')
        for part in outer:
            owner = getattr(owner, part)
        original = getattr(owner, name)
        across = proxy(f'{exercise.chapter.removesuffix(".py")}.{exercise.name}')
        setattr(owner, name, across)
        for module in loaded:  # train.py's own `crop_flip`, from `from augment import crop_flip`
            for key, value in list(vars(module).items()):
                if value is original:
                    setattr(module, key, across)


def remembering(init):
    @functools.wraps(init)
    def made(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.__dict__[MADE_WITH] = (args, kwargs)
    return made


def proxy(qualified):
    """The function that stands for the student's `qualified` ('model.BasicBlock.forward') here."""
    def across(*args, **kwargs):
        return call(qualified, args, kwargs)
    across.__name__ = across.__qualname__ = qualified.rsplit('.', 1)[-1]
    across.__doc__ = f"The student's {qualified}, called in the worker (course/apart.py)."
    return across


def call(qualified, args, kwargs):
    """The student's function called in the worker, as if here."""
    args = [list(a) if isinstance(a, types.GeneratorType) else a for a in args]  # the batches a generator yields
    kwargs = {k: list(a) if isinstance(a, types.GeneratorType) else a for k, a in kwargs.items()}
    places = {id(p): (at, i) for at, a in [*enumerate(args), *kwargs.items()] if isinstance(a, nn.Module)
              for i, p in enumerate(a.parameters())}
    state = torch.get_rng_state()
    request = {'call': qualified, 'args': [described(a, places) for a in args],
               'kwargs': {k: described(a, places) for k, a in kwargs.items()}, 'rng': WORKER.rng_to_send(state)}
    reply = WORKER.ask(request)
    if 'raised' in reply:
        raise reraised(reply)
    if 'not_plain' in reply:
        raise CannotCross(cut(reply['not_plain']) + ': only exact int, float, bool, str and None, lists, tuples and '
                          'dicts of these, and tensors come back from a student\'s function')
    expect(reply, {'result', 'after', 'kwargs_after', 'rng'})
    expect(reply['kwargs_after'], set(kwargs))
    if type(reply['after']) is not list or len(reply['after']) != len(args):
        raise WorkerLost('the worker answered with the wrong number of arguments')
    for value, description, after in [*zip(args, request['args'], reply['after']),
                                      *[(kwargs[k], request['kwargs'][k], reply['kwargs_after'][k]) for k in kwargs]]:
        write_back(value, description[0], after)
    WORKER.take_rng(reply['rng'])
    wrt = [(at, 'tensor' if isinstance(a, torch.Tensor) else 'parameters') for at, a in [*enumerate(args), *kwargs.items()]
           if isinstance(a, torch.Tensor) and a.requires_grad or isinstance(a, nn.Module)]
    tracked = [t for at, what in wrt for t in ([arg(args, kwargs, at)] if what == 'tensor'
                                                else list(arg(args, kwargs, at).parameters()))]
    result = reply['result']
    outputs = [result] if type(result) is torch.Tensor else list(result) if type(result) is tuple else []
    if torch.is_grad_enabled() and any(t.requires_grad for t in tracked) and outputs \
            and all(type(o) is torch.Tensor and o.is_floating_point() for o in outputs):
        return Across.apply(request | {'rng': state}, wrt, result, *tracked)
    return result


def arg(args, kwargs, at):
    return args[at] if isinstance(at, int) else kwargs[at]


def described(value, places):
    """An argument as it crosses: [kind, fields]."""
    if isinstance(value, nn.Module):
        if type(value) is TinyNet:
            name = 'TinyNet'
        elif type(value).__module__ in {c.removesuffix('.py') for c in handout.CHAPTERS}:
            name = f'{type(value).__module__}:{type(value).__qualname__}'
        else:
            raise CannotCross(f'a {type(value).__qualname__} cannot be handed to the worker: only the modules of the '
                              f'chapters, and TinyNet, are built there')
        args, kwargs = value.__dict__.get(MADE_WITH, ((), {}))
        device = next(iter([*value.parameters(), *value.buffers()]), torch.empty(0)).device
        channels_last = any(p.dim() == 4 and not p.is_contiguous() for p in value.parameters())
        return ['module', {'class': name, 'args': list(args), 'kwargs': kwargs, 'state': dict(value.state_dict()),
                           'training': [part.training for part in value.modules()], 'device': str(device),
                           'channels_last': channels_last}]
    if isinstance(value, torch.optim.Optimizer):
        try:
            groups = [{k: v for k, v in group.items() if k != 'params'} | {'params': [places[id(p)] for p in group['params']]}
                      for group in value.param_groups]
        except KeyError:
            raise CannotCross('an optimizer whose parameters are not those of a module handed over in the same call') from None
        return ['optimizer', {'class': type(value).__name__, 'groups': groups, 'state': value.state_dict()}]
    if isinstance(value, torch.amp.GradScaler):
        return ['scaler', {'device': value._device, 'enabled': value.is_enabled(), 'state': value.state_dict()}]
    if isinstance(value, torch.Generator):
        return ['generator', {'device': str(value.device), 'state': value.get_state()}]
    if isinstance(value, torch.autocast):
        return ['autocast', {'device': value.device, 'dtype': str(value.fast_dtype).removeprefix('torch.'),
                             'enabled': value._enabled}]
    if isinstance(value, contextlib.nullcontext):
        return ['nullcontext', {}]
    return ['data', value]  # plain data, or wire.encode says what it is


def write_back(value, kind, after):
    """What the call did to an argument, done to this process's object."""
    if kind == 'data' and after == []:
        return  # no tensor in it: nothing the call could change
    try:
        if kind == 'module':
            expect(after, {'state', 'training'})
            value.load_state_dict(after['state'])
            parts = list(value.modules())
            if type(after['training']) is not list or len(after['training']) != len(parts) \
                    or not all(type(t) is bool for t in after['training']):
                raise WorkerLost('the worker answered a module\'s modes that do not fit it')
            for part, training in zip(parts, after['training']):
                part.training = training
        elif kind == 'optimizer':
            value.load_state_dict(after)
        elif kind == 'scaler' and value.is_enabled():
            value.load_state_dict(after)
        elif kind == 'generator':
            value.set_state(after)
        elif kind == 'data':
            ours = tensors_in(value)
            if type(after) is not list or len(after) != len(ours):
                raise WorkerLost('the worker answered the wrong number of tensors for an argument')
            with torch.no_grad():
                for mine, theirs in zip(ours, after):
                    if type(theirs) is torch.Tensor and theirs.shape == mine.shape and not torch.equal(mine, theirs.to(mine)):
                        mine.copy_(theirs)  # the student's function changed it in place
    except (RuntimeError, ValueError, TypeError, KeyError) as e:
        raise CannotCross(f'the state the student\'s code left a {type(value).__name__} in does not fit it: '
                          f'{cut(str(e))}') from None


def tensors_in(value):
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in tensors_in(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in tensors_in(v)]
    return []


def expect(reply, keys):
    if type(reply) is not dict or set(reply) != keys:
        raise WorkerLost('the worker answered what is not an answer')


def cut(text, size=300):
    return str(text)[:size]


def reraised(reply):
    """The exception the student's code raised, as this process raises it: of the same type, where
    it is a built-in one or one of the chapters' (data.DataError), else RaisedApart; never one that
    is not an Exception (KeyboardInterrupt, SystemExit)."""
    name, module, message, where = (cut(reply.get(key, ''), 300) for key in ('raised', 'module', 'message', 'where'))
    text = message + (f' ({where})' if where else '')
    owner = builtins if module == 'builtins' else sys.modules.get(module) \
        if module.split('.')[0] in {c.removesuffix('.py') for c in handout.CHAPTERS} | {'bookkeeping'} else None
    cls = getattr(owner, name, None) if owner else None
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            return cls(text)
        except Exception:  # a type that wants other arguments (UnicodeDecodeError)
            pass
    return RaisedApart(f'{module}.{name}: {text}')


class Across(torch.autograd.Function):
    """A result the worker computed, as a node of this process's autograd graph: its backward sends
    the call again, with the gradients of the loss with respect to the result, and the worker
    answers with those of the loss with respect to the tensors and parameters that went in."""

    @staticmethod
    def forward(ctx, request, wrt, result, *tracked):
        ctx.request, ctx.wrt, ctx.shapes = request, wrt, [t.shape for t in tracked]
        return result.clone() if type(result) is torch.Tensor else tuple(r.clone() for r in result)

    @staticmethod
    def backward(ctx, *grads):
        reply = WORKER.ask(ctx.request | {'wrt': ctx.wrt, 'grads': list(grads)})
        WORKER.synced = None  # its generator went back to the call's, and on from there
        if 'raised' in reply:
            raise reraised(reply)
        expect(reply, {'gradients'})
        found = reply['gradients']
        if type(found) is not list or len(found) != len(ctx.shapes) or not all(
                g is None or type(g) is torch.Tensor and g.shape == shape for g, shape in zip(found, ctx.shapes)):
            raise WorkerLost('the worker answered gradients that do not fit what went in')
        return (None, None, None, *found)
