"""What a run shows while an epoch trains (train.py's loop wraps its batches in with_progress). The
notebook (docs/colab.ipynb) gives each command a terminal of its own, so it shows there too.
"""
import sys
import time


def with_progress(batches, total):
    """The batches, unchanged. On a terminal it also keeps one line rewritten in place while they
    are used: batches done, images per second and the time the epoch has left. Into a file or a
    pipe it prints nothing, so that logs keep one line per epoch."""
    if not sys.stdout.isatty():
        yield from batches
        return
    start = shown = time.perf_counter()
    images = 0
    for done, (x, y) in enumerate(batches, 1):
        yield x, y  # the loop trains on it; we resume when it asks for the next
        images += len(y)
        now = time.perf_counter()
        if done == 1 or now - shown > 0.5:  # a few times a second is enough to read
            left = (total - done) * (now - start) / done
            print(f'\r  batch {done}/{total}  {images / (now - start):,.0f} images/s  '
                  f'{int(left) // 60}:{int(left) % 60:02d} left ', end='', flush=True)
            shown = now
    print('\r\033[K', end='', flush=True)  # clear the line for the epoch's summary
