"""Plain data over a pipe, between the checks and a student's code when a class is graded
(course/apart.py on the checks' side, course/worker.py on the student's).

What crosses is exact int, float, bool, str and None; lists, tuples and dicts of these (keys str
or int); and tensors, as dtype, shape, device, memory format and bytes. A subclass (a float whose == always says
yes), or an object of any other type, cannot be written: NotPlain names its type. What is read is
parsed, never run (no pickle), and capped: in bytes, in depth, and in the dtypes a tensor may have.
A tensor read is a new plain torch.Tensor that owns its memory.

A message is two lengths (8 bytes each, big-endian), a JSON tree, and the bytes of its tensors:
in the tree a list is ["L", [...]], a tuple ["U", [...]], a dict ["D", [[key, value], ...]], a
tensor ["T", dtype, shape, device, offset, size, format]; numbers, strings, true, false and null stand for
themselves.
"""
import json
import math
import re
import struct

import torch

MAX_TREE = 16 * 2 ** 20     # bytes of a message's JSON
MAX_BYTES = 512 * 2 ** 20   # bytes of its tensors: ResNet-18's weights are 45 MB
MAX_DEPTH = 32
DTYPES = {str(d).removeprefix('torch.'): d for d in (
    torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.int16, torch.int8,
    torch.uint8, torch.bool)}
DEVICE = re.compile(r'cpu|cuda(:\d{1,2})?')


class NotPlain(TypeError):
    """A value that is not plain data; its message names the type."""


class Broken(Exception):
    """A message that is not what write() writes: too large, cut short, or malformed."""


def write(stream, value):
    """value, which must be plain data, to a binary stream, as one message."""
    stream.write(encode(value))
    stream.flush()


def encode(value):
    """value, which must be plain data, as the bytes of one message; NotPlain before anything is
    written if it is not."""
    blobs = []
    tree = json.dumps(plain(value, blobs, 0), separators=(',', ':')).encode()
    return b''.join([struct.pack('>QQ', len(tree), sum(len(b) for b in blobs)), tree, *blobs])


def plain(value, blobs, depth):
    """The JSON tree of `value`; its tensors' bytes appended to blobs."""
    kind = type(value)
    if depth > MAX_DEPTH:
        raise NotPlain(f'data nested more than {MAX_DEPTH} deep')
    if value is None or kind in (bool, int, float, str):
        return value
    if kind in (list, tuple):
        return ['L' if kind is list else 'U', [plain(v, blobs, depth + 1) for v in value]]
    if kind is dict:
        odd = next((type(k) for k in value if type(k) not in (str, int)), None)
        if odd:
            raise NotPlain(f'a dict with a key of type {name_of(odd)}')
        return ['D', [[k, plain(v, blobs, depth + 1)] for k, v in value.items()]]
    if kind is torch.Tensor:
        if value.dtype not in DTYPES.values():
            raise NotPlain(f'a tensor of dtype {value.dtype}')
        flat = value.detach().to('cpu').contiguous().reshape(-1)
        data = flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b''
        blobs.append(data)
        layout = 'channels_last' if value.dim() == 4 and value.is_contiguous(memory_format=torch.channels_last) \
            and not value.is_contiguous() else 'contiguous'  # the convolutions' layout: it changes their rounding
        return ['T', str(value.dtype).removeprefix('torch.'), list(value.shape), str(value.device),
                sum(map(len, blobs[:-1])), len(data), layout]
    base = next((b for b in (bool, int, float, str, list, tuple, dict, torch.Tensor) if isinstance(value, b)), None)
    raise NotPlain(name_of(kind) + (f', a subclass of {name_of(base)}' if base else ''))


def name_of(kind):
    return kind.__qualname__ if kind.__module__ == 'builtins' else f'{kind.__module__}.{kind.__qualname__}'


def read(stream, max_bytes=MAX_BYTES):
    """The next message of a binary stream, as plain data; EOFError if the stream ended between
    messages, Broken if it is not a message (or larger than max_bytes of tensors)."""
    head = exactly(stream, 16, at_start=True)
    tree_size, blob_size = struct.unpack('>QQ', head)
    if tree_size > MAX_TREE or blob_size > max_bytes:
        raise Broken(f'a message of {tree_size + blob_size:,} bytes, past the cap of {MAX_TREE + max_bytes:,}')
    try:
        tree = json.loads(exactly(stream, tree_size))
    except (ValueError, RecursionError) as e:
        raise Broken(f'not a message: {type(e).__name__}') from None
    return value_of(tree, memoryview(exactly(stream, blob_size)), 0)


def exactly(stream, size, at_start=False):
    data = bytearray()
    while len(data) < size:
        chunk = stream.read(min(size - len(data), 2 ** 20))
        if not chunk:
            if at_start and not data:
                raise EOFError('the stream ended')
            raise Broken(f'a message cut short: {len(data)} of {size} bytes')
        data += chunk
    return data


def value_of(tree, blob, depth):
    """The plain data a JSON tree stands for; Broken for anything else."""
    if depth > MAX_DEPTH:
        raise Broken(f'data nested more than {MAX_DEPTH} deep')
    if tree is None or type(tree) in (bool, int, float, str):
        return tree
    if type(tree) is not list or not tree or type(tree[0]) is not str:
        raise Broken('not a message: a JSON object or an untagged list')
    tag, *rest = tree
    if tag in ('L', 'U') and len(rest) == 1 and type(rest[0]) is list:
        items = [value_of(v, blob, depth + 1) for v in rest[0]]
        return items if tag == 'L' else tuple(items)
    if tag == 'D' and len(rest) == 1 and type(rest[0]) is list:
        pairs = rest[0]
        if not all(type(p) is list and len(p) == 2 and type(p[0]) in (str, int) for p in pairs):
            raise Broken('not a message: a dict entry that is not [str or int, value]')
        return {k: value_of(v, blob, depth + 1) for k, v in pairs}
    if tag == 'T' and len(rest) == 6:
        return tensor_of(*rest, blob)
    raise Broken(f'not a message: the tag {tag[:20]!r}')


def tensor_of(dtype, shape, device, offset, size, layout, blob):
    if type(dtype) is not str or dtype not in DTYPES:
        raise Broken(f'a tensor of an unknown dtype {str(dtype)[:20]!r}')
    if type(shape) is not list or len(shape) > 8 or not all(type(n) is int and 0 <= n for n in shape):
        raise Broken('a tensor whose shape is not a list of at most 8 sizes')
    if type(device) is not str or not DEVICE.fullmatch(device):
        raise Broken(f'a tensor on an unknown device {str(device)[:20]!r}')
    itemsize = DTYPES[dtype].itemsize
    if type(offset) is not int or type(size) is not int or not 0 <= offset <= offset + size <= len(blob) \
            or size != math.prod(shape) * itemsize:
        raise Broken('a tensor whose bytes are not where, or as many as, its shape says')
    if size == 0:
        flat = torch.empty(0, dtype=DTYPES[dtype])
    else:
        flat = torch.frombuffer(bytearray(blob[offset:offset + size]), dtype=torch.uint8).view(DTYPES[dtype])
    if layout not in ('contiguous', 'channels_last') or layout == 'channels_last' and len(shape) != 4:
        raise Broken('a tensor of an unknown memory format')
    try:
        tensor = flat.reshape(shape).to(device)
    except RuntimeError:  # a CUDA tensor where there is no GPU
        raise Broken(f'a tensor on {device}, which this process does not have') from None
    return tensor.contiguous(memory_format=torch.channels_last) if layout == 'channels_last' else tensor
