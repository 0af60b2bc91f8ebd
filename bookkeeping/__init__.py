"""What the chapters lean on, and a student need not read to learn the ideas: the flags of a run
(flags.py), the run's folder and its exact resume (runs.py), the device and the precision
(hardware.py), CIFAR-10's download (download.py), the locks that keep two processes off one run,
one GPU or one download (locks.py), the progress line within an epoch (progress.py), the check
that a Python has the packages a chapter needs (environment.py), the reader of study.toml
(study.py), and the report's layout: its tables' markdown (tables.py) and its figures (figures.py).

The chapters at the top import these; these import no chapter, nor the programs that drive the
chapters (runner/, course/), so each can be read, and tested, below everything that uses it
(tests/test_layout.py holds the code to that).

CHAPTERS is the one list of the chapters, in the reading order: the README's reading order is
checked against it, the handout looks for its exercises in them, and the layout test knows the
chapters by it.
"""
CHAPTERS = ('model.py', 'data.py', 'augment.py', 'schedule.py', 'train.py', 'stats.py', 'report.py', 'bench.py')
