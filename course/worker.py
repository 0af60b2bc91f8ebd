"""The worker: the process that runs a student's code while a class is graded. It sees this file,
wire.py, the chapters (the student's, laid over the handout's) and the handout's bookkeeping/ that
they import, and nothing of the tests:
course/fence.py starts it fenced, and course/apart.py, in the checks' process, asks it to call a
student's function and checks what comes back. It answers one request at a time, read from stdin
and written to stdout, until stdin closes:

    {'ping': True}  ->  {'torch': version}: its Python starts, with torch
    {'call': 'schedule.cosine_lr', 'args': [...], 'kwargs': {...}, 'rng': state or None}
        ->  {'result': ..., 'after': [...], 'kwargs_after': {...}, 'rng': state}
        or  {'raised': its type, 'module': the type's module, 'message': ..., 'where': 'schedule.py, line 19'}
    the same call with 'wrt' and 'grads'  ->  {'gradients': [...]}: the gradients of its result

Each argument comes described as [kind, fields]: ['data', value] for plain data, or a description
of an object the checks hold (a module, an optimizer, a GradScaler, a generator, an autocast),
which `built` makes here. 'after' is each argument's state once the call is done, which the checks
write back into their own objects, so that a call here does to them what a call in their process
would do; 'rng' is torch's global generator, which goes there and back for the same reason (None
where it is the one this process has, or the call left it as it was).

The student's code can change anything in this process, this file's functions included; what
leaves it is plain data (wire.py), and the checks trust nothing else of it.
"""
import builtins
import contextlib
import importlib
import os
import signal
import sys
import traceback

import torch
from torch import nn
import torch.nn.functional as F

try:
    from course import wire  # in the checks' process, which imports TinyNet from here
except ImportError:
    import wire  # in the worker, which has this file and wire.py side by side

CUT = 300  # characters of a student's exception message that go back to the checks


class TinyNet(nn.Module):
    """A stand-in for ResNet-18 where it is too slow, which the tests train (tests/conftest.py takes
    it from here, so that the worker can build one when a test hands it to a student's function).
    On a CPU, fp16 convolutions are emulated and one ResNet-18 step takes minutes. The same kinds
    of layer: conv, BatchNorm, ReLU, global average pool, linear. It learns the tinted fake data
    set in a few epochs."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        return self.fc(F.relu(self.bn(self.conv(x))).mean(dim=(2, 3)))


def answer(request, chapters):
    """What goes back for one request, as the bytes of a message. Python's builtins are put back as
    they were once the student's code has run: a chapter that changes one (len, isinstance) breaks
    its own calls, not the code here that answers them."""
    if request.get('ping'):
        return wire.encode({'torch': str(torch.__version__)})
    try:
        try:
            chapter, name = request['call'].split('.', 1)
            function = importlib.import_module(chapter)
            for part in name.split('.'):
                function = getattr(function, part)
            args, kwargs = arguments(request['args'], request['kwargs'])
            if request['rng'] is not None:  # None: the checks' is the one this process has
                torch.set_rng_state(request['rng'])  # after building, whose modules draw their first weights
            before = torch.get_rng_state()
            if 'wrt' in request:
                reply = {'gradients': gradients(function, args, kwargs, request)}
            else:
                result = function(*args, **kwargs)
                reply = {'result': result, 'after': [state_of(a, d) for a, d in zip(args, request['args'])],
                         'kwargs_after': {k: state_of(kwargs[k], d) for k, d in request['kwargs'].items()},
                         'rng': None if torch.equal(torch.get_rng_state(), before) else torch.get_rng_state()}
        finally:
            BUILTINS.clear()
            BUILTINS.update(AS_THEY_WERE)
        try:
            return wire.encode(reply)
        except wire.NotPlain as e:  # the student hears why
            return wire.encode({'not_plain': f'{request["call"].rsplit(".", 1)[-1]} returned or left {str(e)[:CUT]}'})
    except BaseException as e:  # sys.exit() too: whatever the student's code raised
        return wire.encode(raised(e, chapters))


BUILTINS = vars(builtins)
AS_THEY_WERE = dict(BUILTINS)


def arguments(described_args, described_kwargs):
    """The call's arguments, built from their descriptions: modules first, then the optimizers
    whose parameters are theirs, named by the argument they are in and their place among its
    parameters()."""
    described = dict(enumerate(described_args)) | described_kwargs
    made = {at: built(kind, fields) for at, (kind, fields) in described.items() if kind != 'optimizer'}
    for at, (kind, fields) in described.items():
        if kind == 'optimizer':
            groups = [{k: v for k, v in group.items() if k != 'params'}
                      | {'params': [list(made[owner].parameters())[i] for owner, i in group['params']]}
                      for group in fields['groups']]
            made[at] = getattr(torch.optim, fields['class'])(groups)
            made[at].load_state_dict(fields['state'])
    return [made[i] for i in range(len(described_args))], {k: made[k] for k in described_kwargs}


def built(kind, fields):
    """The object a description stands for."""
    if kind == 'data':
        return fields
    if kind == 'module':
        chapter, _, name = fields['class'].rpartition(':')
        cls = getattr(importlib.import_module(chapter), name) if chapter else {'TinyNet': TinyNet}[name]
        module = cls(*fields['args'], **fields['kwargs']).to(
            fields['device'], memory_format=torch.channels_last if fields['channels_last'] else torch.preserve_format)
        module.load_state_dict(fields['state'])
        for part, training in zip(module.modules(), fields['training'], strict=True):
            part.training = training
        return module
    if kind == 'scaler':
        scaler = torch.amp.GradScaler(fields['device'], enabled=fields['enabled'])
        if fields['enabled']:
            scaler.load_state_dict(fields['state'])
        return scaler
    if kind == 'generator':
        generator = torch.Generator(fields['device'])
        generator.set_state(fields['state'])
        return generator
    if kind == 'autocast':
        return torch.autocast(fields['device'], dtype=getattr(torch, fields['dtype']), enabled=fields['enabled'])
    if kind == 'nullcontext':
        return contextlib.nullcontext()
    raise ValueError(f'no such kind of argument: {kind}')


def state_of(value, description):
    """An argument's state after the call, for the checks to write back into their object."""
    kind = description[0]
    if kind == 'module':
        return {'state': dict(value.state_dict()), 'training': [part.training for part in value.modules()]}
    if kind in ('optimizer', 'scaler'):
        return value.state_dict()
    if kind == 'generator':
        return value.get_state()
    if kind == 'data':
        return tensors_in(value)
    return None


def tensors_in(value):
    """The tensors within plain data, in order: those a function may have changed in place."""
    if type(value) is torch.Tensor:
        return [value]
    if type(value) in (list, tuple):
        return [t for v in value for t in tensors_in(v)]
    if type(value) is dict:
        return [t for v in value.values() for t in tensors_in(v)]
    return []


def gradients(function, args, kwargs, request):
    """The gradients of the call's result, given those of the loss with respect to it (the
    request's 'grads'), with respect to the tensors and modules' parameters in 'wrt'."""
    wrt = []
    for at, what in request['wrt']:
        value = args[at] if isinstance(at, int) else kwargs[at]
        wrt += [value.requires_grad_()] if what == 'tensor' else list(value.parameters())
    with torch.enable_grad():
        result = function(*args, **kwargs)
    outputs = [result] if isinstance(result, torch.Tensor) else list(result)
    found = torch.autograd.grad(outputs, wrt, grad_outputs=request['grads'], allow_unused=True)
    return [g if g is None else g.detach() for g in found]


def raised(error, chapters):
    """An exception as it goes back: its type, its message cut to CUT characters, and the last line
    of a chapter it passed through."""
    try:
        message = str(error)[:CUT]
    except BaseException:
        message = '(its message could not be made)'
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename.startswith(chapters + os.sep)]
    where = f'{os.path.basename(frames[-1].filename)}, line {frames[-1].lineno}' if frames else ''
    kind = type(error)
    return {'raised': str(kind.__qualname__)[:100], 'module': str(kind.__module__)[:100], 'message': message,
            'where': where}


def main():
    """Serve requests until stdin closes. The requests and answers keep stdin and stdout to
    themselves: what the student's code prints goes to stderr, which the fence caps."""
    chapters = os.path.realpath(sys.argv[1])
    sys.path.insert(0, chapters)
    requests, answers = os.fdopen(os.dup(0), 'rb'), os.fdopen(os.dup(1), 'wb')
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(2, 1)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the output limit: OSError (File too large), not the worker's end
    worker = os.getpid()
    while True:
        try:
            request = wire.read(requests)
        except EOFError:
            return
        answered = answer(request, chapters)
        if os.getpid() != worker:  # a child the student's code forked, back from the call: only the worker answers
            os._exit(0)
        answers.write(answered)
        answers.flush()


if __name__ == '__main__':
    main()
