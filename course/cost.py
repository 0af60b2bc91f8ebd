"""What grading apart costs: the same solved chapters graded both ways, one after the other, on this
machine, and the ratio.

    python -m course.cost        (docs/handout.md quotes what it printed, and where)

    make grade         in a handout with every solution put back: the student's own grade, every test
                       that grades in one process, the chapters imported there, unfenced
    make grade-class   a class of one, those chapters: the checks in a process of their own, the
                       student's code in the fenced worker, every call across a pipe

The two do not run the same tests: grade-class runs only the tests of one exercise each (those that
count), the hidden ones included; make grade runs those but the hidden, and the tests shared by
several exercises too. So the same tests are also timed both ways, in one process and apart: what
the pipe and the fence cost each call.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from course import fence, grade, handout


def timed(command, cwd, env=None):
    start = time.perf_counter()
    ran = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env)
    if ran.returncode not in (0, 1):
        raise SystemExit(f'cost: error: {" ".join(command[:4])}... ended with status {ran.returncode}:\n{ran.stdout}{ran.stderr}')
    return time.perf_counter() - start


def main():
    the_record = grade.record_of(handout.HERE)
    with tempfile.TemporaryDirectory(prefix='cost-') as tmp:
        solved = os.path.join(tmp, 'solved')
        handout.make(solved, keep={e['name'] for e in the_record['exercises']}, written=the_record)
        sent = os.path.join(tmp, 'submissions', 'solved')
        os.makedirs(sent)
        for chapter in {e['chapter'] for e in the_record['exercises']}:
            shutil.copy(os.path.join(solved, chapter), sent)
        own = [t['id'] for t in the_record['tests'] if len(t['exercises']) == 1 and not t['hidden']]
        rows = [('make grade (its tests, in one process)', timed([sys.executable, '-m', 'course.grade'], solved)),
                ('make grade-class (a class of one, apart and fenced)',
                 timed([sys.executable, '-m', 'course.classroom', os.path.dirname(sent), '--out',
                        os.path.join(tmp, 'graded', 'grades.csv')], handout.HERE))]
        # The same tests, public and of one exercise each, in one process and apart: the pipe's cost.
        pytest = [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', *own]
        one_thread = os.environ | {'OMP_NUM_THREADS': '1'}  # as grade-class runs them
        work = os.path.join(tmp, 'worker')
        fence.prepare(work, {name: os.path.join(solved, name) for name in [*handout.CHAPTERS, 'bookkeeping']}, 0)
        settings = json.dumps({'limits': fence.Limits()._asdict(), 'slot': 0, 'sandboxed': not fence.why_no_bubblewrap()})
        rows += [(f'the {len(own)} public tests of one exercise, in one process', timed(pytest, solved, one_thread)),
                 (f'the same, apart and fenced', timed([*pytest, '-p', 'course.apart', '--apart', work, '--apart-fence',
                                                       settings], solved, one_thread))]
    print(f'On {os.cpu_count()} cores of {machine()}, one after the other:\n')
    print('| grading | seconds |\n|---|---:|')
    for name, seconds in rows:
        print(f'| {name} | {seconds:.1f} |')
    print(f'\ngrade-class / make grade: {rows[1][1] / rows[0][1]:.2f}x; the same tests apart / in one process: '
          f'{rows[3][1] / rows[2][1]:.2f}x')


def machine():
    try:
        with open('/proc/cpuinfo') as f:
            return next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
    except (OSError, StopIteration):
        return 'this machine'


if __name__ == '__main__':
    main()
