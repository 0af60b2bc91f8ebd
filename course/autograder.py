"""The class graded on Gradescope: an autograder zip that grades one submission as `make grade-class`
grades each, and writes Gradescope's results.json.

    make autograder OUT=autograder.zip        the zip to upload (python -m course.autograder build OUT)
    AUTOGRADER_ROOT=DIR DIR/source/run_autograder   one submission graded off Gradescope, DIR standing
                                                    for /autograder: DIR/submission in, DIR/results out

Gradescope unzips the zip into /autograder/source, runs setup.sh once when the image is built and
run_autograder in a fresh container for each submission, with the student's files in
/autograder/submission, and reads /autograder/results/results.json: a test per exercise, its
score and max_score, and what the student may read (Gradescope's "Autograder Specifications").
The zip holds the instructor's copy: the handout, blank, with the hidden tests and the record.
"""
import json
import os
import shutil
import stat
import sys
import tempfile
import zipfile

from bookkeeping import environment
from course import classroom, fence, grade, handout

SETUP = '''#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder's image: Python, bubblewrap, and
# what grading needs ({needs}), at the versions of requirements.lock, in a virtual environment of
# their own; not the notebook's packages, which only the project's own tests use.
set -euo pipefail
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv python3-pip bubblewrap util-linux >/dev/null
python3 -m venv /autograder/venv
/autograder/venv/bin/pip install -q {needs} -c /autograder/source/requirements.lock
'''
RUN = '''#!/usr/bin/env bash
# Gradescope runs this for each submission. AUTOGRADER_ROOT stands in for /autograder off Gradescope,
# AUTOGRADER_PYTHON for the Python that setup.sh installs.
root="${AUTOGRADER_ROOT:-/autograder}"
python="${AUTOGRADER_PYTHON:-/autograder/venv/bin/python}"
cd "$root/source" && exec "$python" -m course.autograder run "$root"
'''


def build(out, root=handout.HERE):
    """The autograder zip: the instructor's copy of `root`, setup.sh and run_autograder at its top."""
    with tempfile.TemporaryDirectory(prefix='autograder-') as tmp:
        source = os.path.join(tmp, 'source')
        handout.make(source, root=root, hidden=True)
        for name, text in (('setup.sh', SETUP.format(needs=' '.join(environment.FLOOR))), ('run_autograder', RUN)):
            with open(os.path.join(source, name), 'w') as f:
                f.write(text)
            os.chmod(os.path.join(source, name), 0o755)
        with zipfile.ZipFile(out, 'w', zipfile.ZIP_DEFLATED) as archive:
            for folder, _, names in os.walk(source):
                for name in names:
                    path = os.path.join(folder, name)
                    info = zipfile.ZipInfo.from_file(path, os.path.relpath(path, source))
                    info.external_attr = (stat.S_IFREG | os.stat(path).st_mode & 0o777) << 16
                    with open(path, 'rb') as f:
                        archive.writestr(info, f.read(), zipfile.ZIP_DEFLATED)


def run(autograder_root):
    """Grade the submission in ROOT/submission against ROOT/source; write ROOT/results/results.json."""
    source = os.path.join(autograder_root, 'source')
    if os.geteuid() == 0:
        os.chmod(source, 0o700)  # the hidden tests: out of reach of the worker's user, should bubblewrap not work here
    the_record = grade.record_of(source)
    limits = fence.Limits()
    with tempfile.TemporaryDirectory(prefix='autograder-') as tmp:
        clean = os.path.join(tmp, 'source')  # the copy without Gradescope's files, as grade-class uses
        shutil.copytree(source, clean, ignore=shutil.ignore_patterns('setup.sh', 'run_autograder'))
        sandboxed = not fence.why_no_bubblewrap()
        cannot = classroom.why_worker_cannot_start(clean, limits, sandboxed)
        graded = classroom.Graded('submission', [], [f'not graded: the student\'s code cannot run here: {cannot}'], []) \
            if cannot else classroom.grade_one('submission', os.path.join(autograder_root, 'submission'), clean,
                                               the_record, limits, 0, sandboxed)
    os.makedirs(os.path.join(autograder_root, 'results'), exist_ok=True)
    with open(os.path.join(autograder_root, 'results', 'results.json'), 'w') as f:
        json.dump(results(graded, the_record, limits), f, indent=1)


def results(graded, the_record, limits):
    """Gradescope's results.json of a Graded: a test per exercise, the total, and what went wrong."""
    tests = [{'name': f'{r["exercise"]}. {r["name"]} ({r["chapter"]})', 'score': r['points'], 'max_score': r['out_of'],
              'output': '\n'.join(classroom.about(r)).strip(), 'visibility': 'visible'} for r in graded.rows]
    if not graded.rows:  # refused whole: each exercise 0, and why
        tests = [{'name': f'{e["number"]}. {e["name"]} ({e["chapter"]})', 'score': 0.0, 'max_score': e['points'],
                  'output': '; '.join(graded.problems), 'visibility': 'visible'} for e in the_record['exercises']]
    return {'score': round(sum(t['score'] for t in tests), 1), 'tests': tests,
            'output': classroom.feedback_text(graded, limits, ''), 'visibility': 'visible', 'stdout_visibility': 'hidden'}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] not in ('build', 'run'):
        raise SystemExit('usage: python -m course.autograder build OUT.zip | run AUTOGRADER_ROOT')
    if argv[0] == 'build':
        why = environment.folder(os.path.dirname(os.path.abspath(argv[1])))  # made before any work, or why not
        if why or os.path.isdir(argv[1]):
            raise SystemExit(f'autograder: error: OUT={argv[1]}: {why or "is a folder, not a file"}')
        build(argv[1])
        print(f'{argv[1]}: the autograder to upload to Gradescope')
    else:
        run(argv[1])
    return 0


if __name__ == '__main__':
    sys.exit(main())
