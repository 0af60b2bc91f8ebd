"""A damaged run folder costs one line, never the study. Every file a run writes is damaged in
turn, in every way that happens (empty, cut short, random bytes, valid JSON of the wrong shape, a
folder where the file should be), in one run of a study of three; and every reader of run folders
is run on that study: make status, make tables, make figures, the Slurm submission, make's check
before a target's runs, and train.py --resume. Each must show no traceback; a line naming the
damaged folder and file where it reads that file; and the other two runs as in the undamaged study.

The three runs are made once, by train.py with TinyNet for ResNet-18, so that the test takes seconds."""
import json
import os
import random
import re
import shutil

import pytest
import torch

import report
from bookkeeping import runs
from runner import checks, slurm, status
from bookkeeping import study
import train
from bookkeeping import flags
from conftest import A_RUN, TinyNet, snapshot, write_run

STUDY = study.load()
SWEEP = [s for s in STUDY.settings() if s.experiment == 'lr-sweep']  # three settings, a run each
DAMAGED = 'lr-sweep/lr0.01/seed0'
FLAGS = ['--epochs', '2', '--train-subset', '100', '--eval-subset', '30', '--batch-size', '50', '--precision', 'fp32',
         '--device', 'cpu']


@pytest.fixture(scope='module')
def pristine(cifar_root, tmp_path_factory):
    """RUNS/lr-sweep/{lr0.1,lr0.01,lr0.001}/seed0, each a finished run, as make lays them out."""
    folder = tmp_path_factory.mktemp('pristine')
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train, 'ResNet18', TinyNet)
        for setting in SWEEP:
            train.main([*flags.command_line(setting.flags).split(), *FLAGS, '--data-dir', cifar_root,
                        '--out', str(folder / setting.experiment / setting.folder / 'seed0')])
    return folder


def cut(data, fraction):
    """The first `fraction` of the bytes; at 100%, all but the last two (a JSON file's last } and newline)."""
    return data[:max(1, int(len(data) * fraction))] if fraction < 1 else data[:-2]


def json_shapes(name, original):
    """Valid JSON of the wrong shape: a key missing, a string where a number belongs, a null."""
    obj = json.loads(original)
    key = {'config.json': 'flags', 'summary.json': 'val_acc'}[name]
    inner = {'config.json': ('flags', 'epochs'), 'summary.json': (None, 'test_acc')}[name]
    shapes = {'a key missing': {k: v for k, v in obj.items() if k != key}, 'null': None, 'a list': [obj]}
    outer, field = inner
    for label, value in (('a string for a number', 'many'), ('a null for a number', None)):
        changed = json.loads(original)
        (changed[outer] if outer else changed)[field] = value
        shapes[label] = changed
    if name == 'config.json':  # the image counts, which every standard error of the tables divides by
        shapes['no sizes'] = {k: v for k, v in obj.items() if k != 'sizes'}
        shapes['a string for a size'] = obj | {'sizes': obj['sizes'] | {'val': 'many'}}
    return {label: json.dumps(value).encode() for label, value in shapes.items()}


def damages(name, original):
    """{what was done: the bytes now in the file, or None for a folder in its place}."""
    rng = random.Random(name)
    found = {'empty': b'', 'random bytes': bytes(rng.randrange(256) for _ in range(300)), 'a folder': None}
    if name != runs.LOCK:
        found |= {f'cut at {f:.0%}': cut(original, f) for f in (0.1, 0.5, 1.0)}
    if name in ('config.json', 'summary.json'):
        found |= json_shapes(name, original)
    if name == 'metrics.jsonl':
        lines = original.decode().splitlines(keepends=True)
        row = json.loads(lines[-1])
        found['its last line gone'] = ''.join(lines[:-1]).encode()  # cut at the end of a line: valid lines, too few
        for label, value in (('a line without a key', {k: v for k, v in row.items() if k != 'val_acc'}),
                             ('a string for a number', row | {'val_acc': 'high'}), ('a null line', None)):
            found[label] = ''.join(lines[:-1] + [json.dumps(value) + '\n']).encode()
    if name == 'predictions.pt':
        for label, value in (('a key missing', {'test': {}}), ('a string for the predictions', {'val': 'none'})):
            path = f'/tmp/{os.getpid()}-{label}.pt'
            torch.save(value, path)
            found[label] = open(path, 'rb').read()
            os.remove(path)
    return found


FILES = ['config.json', 'metrics.jsonl', 'summary.json', 'predictions.pt', 'checkpoint.pt', runs.LOCK]
# The files every reader reads through, and so must name when damaged. Of the checkpoint and the
# lock, the readers of a study's state (runs.read_checked) see only that they are files; the tables need
# neither. What a reader does not read leaves the run whole to it.
WHOLE_READ = {'config.json', 'metrics.jsonl', 'summary.json', 'predictions.pt'}
CHECKS_FILES = {'status', 'slurm', 'check'}


def cases(pristine):
    folder = pristine / DAMAGED
    for name in FILES:
        for label, data in damages(name, (folder / name).read_bytes()).items():
            yield name, label, data


def damage(study_dir, name, data):
    path = study_dir / DAMAGED / name
    os.remove(path)
    if data is None:
        os.mkdir(path)
    else:
        path.write_bytes(data)


def table_rows(text, labels):
    """The rows of our runs, by setting, in the lr sweep's table."""
    return {label: line for line in text.splitlines() for label in labels if line.startswith(f'| {label} | ours')}


def readers(study_dir, capsys, cifar_root, figures):
    """Each reader's output on a study folder: {reader: (its text, what it says of the others)}."""
    folders = [str(study_dir / s.experiment / s.folder / 'seed0') for s in SWEEP]
    others = [f for f in folders if not f.endswith(DAMAGED)]
    said = {}

    def run(reader, call):
        said = ''
        try:
            call()
        except SystemExit as e:  # sys.exit('...'): Python prints the line only when the process ends
            said = e.code + '\n' if isinstance(e.code, str) else ''
        out = capsys.readouterr()
        return out.out + out.err + said

    text = run('status', lambda: status.main(folders))
    said['status'] = (text, [re.split(r'\s{2,}', line.replace(str(study_dir), 'RUNS')) for line in text.splitlines()
                             if line.split()[0] in others])
    out = study_dir.parent / f'{study_dir.name}-figures'
    text = run('tables', lambda: report.main(['--tables', '--runs', str(study_dir), '--out', str(out), '--data-dir',
                                              str(study_dir / 'no-data')]))
    rows = table_rows((out / 'tables.md').read_text(), ['lr 0.1', 'lr 0.001']) if (out / 'tables.md').exists() else {}
    said['tables'] = (text, rows)
    if figures:
        text = run('figures', lambda: report.main(['--figures', '--runs', str(study_dir), '--out', str(out),
                                                   '--data-dir', str(study_dir / 'no-data')]))
        said['figures'] = (text, sorted(os.listdir(out)))
    todo = []
    text = run('slurm', lambda: todo.extend(slurm.unended(folders)[0]))
    said['slurm'] = (text, todo)
    asked = [(f, flags.command_line(s.flags) + ' --seed 0') for f, s in zip(folders, SWEEP)]
    text = run('check', lambda: checks.before(asked, ' '.join(FLAGS), False, str(study_dir / '.checked')))
    said['check'] = (text, [word for word in text.split() if any(word.startswith(o) for o in others)])
    said['slurm'] = (said['slurm'][0], [f.replace(str(study_dir), 'RUNS') for f in said['slurm'][1]])
    return said


@pytest.mark.exercise(*A_RUN, 'cosine_lr', 'mcnemar_p')
def test_every_reader_survives_every_damaged_file(pristine, capsys, cifar_root, tmp_path, monkeypatch):
    monkeypatch.setattr(train, 'ResNet18', TinyNet)
    whole = tmp_path / 'whole'
    shutil.copytree(pristine, whole)
    baseline = readers(whole, capsys, cifar_root, figures=True)
    tried = {}
    for n, (name, label, data) in enumerate(cases(pristine)):
        study_dir = tmp_path / f'case{n}'
        shutil.copytree(pristine, study_dir)
        damage(study_dir, name, data)
        damaged_folder = str(study_dir / DAMAGED)
        said = readers(study_dir, capsys, cifar_root, figures=label == 'empty')  # figures: once per file
        for reader, (text, about_others) in said.items():
            case = f'{reader}, {name} {label}: {text}'
            assert 'Traceback' not in text, case
            named = [line for line in text.splitlines() if damaged_folder in line and name in line]
            if name in WHOLE_READ or (label == 'a folder' and reader in CHECKS_FILES):
                assert len(named) >= 1, case
                assert len({line.split(damaged_folder)[1].split(';')[0] for line in named}) == 1, case  # one damage, said once
            assert about_others == baseline[reader][1], case
            tried[reader] = tried.get(reader, 0) + 1
        # train.py --resume on the damaged run: it mends what the checkpoint holds, or says in one line what to do.
        before = {f: snapshot(study_dir / f) for f in ('lr-sweep/lr0.1/seed0', 'lr-sweep/lr0.001/seed0')}
        said = ''
        try:
            train.main(['--resume', '--out', damaged_folder, '--data-dir', cifar_root])
            status = 0
        except SystemExit as e:  # sys.exit('...'): Python prints the line only when the process ends
            status, said = (e.code, '') if isinstance(e.code, int) else (1, e.code + '\n')
        out = capsys.readouterr()
        text = out.out + out.err + said
        case = f'resume, {name} {label}: {text}'
        assert 'Traceback' not in text and status in (0, 1), case
        if name in runs.MENDED_BY_RESUME and label != 'a folder':  # remade from the checkpoint: whole again
            assert status == 0 and f'{damaged_folder}: {name} ' in text and 'remade from the checkpoint' in text, case
            runs.read_checked(damaged_folder)
        elif name == 'config.json' or label == 'a folder' and name != 'checkpoint.pt':  # a finished run needs no checkpoint
            assert status == 1 and len(text.strip().splitlines()) == 1 and damaged_folder in text and name in text, case
        assert before == {f: snapshot(study_dir / f) for f in before}, case
        tried['resume'] = tried.get('resume', 0) + 1
        shutil.rmtree(study_dir)
    print(f'\ndamaged cases tried, per reader: {tried}')
    assert tried['status'] > 40 and tried['figures'] == len(FILES)


@pytest.mark.parametrize('name, damage, says', [
    ('metrics.jsonl', lambda b: b[:-10], 'metrics.jsonl line 2 is cut short'),   # a full disk, a quota, a killed copy
    ('config.json', lambda b: b[:len(b) // 2], 'config.json is cut short'),
    ('summary.json', lambda b: b'', 'summary.json is empty'),
    ('predictions.pt', lambda b: b[:len(b) // 2], 'predictions.pt cannot be read'),
])
@pytest.mark.exercise(*A_RUN)
def test_the_four_damages_seen_on_a_finished_study(pristine, tmp_path, capsys, name, damage, says):
    """Each took make status and make tables down with a traceback. Now: make status shows the run
    as damaged, with what to do, and exits 1; make tables leaves it out, says so in one line, under
    its table and in the verdicts it would have been in, writes the rest, and exits 1."""
    shutil.copytree(pristine, tmp_path / 'runs')
    path = tmp_path / 'runs' / DAMAGED / name
    path.write_bytes(damage(path.read_bytes()))
    folders = [str(tmp_path / 'runs' / s.experiment / s.folder / 'seed0') for s in SWEEP]
    assert status.main(folders) == 1
    line, = [line for line in capsys.readouterr().out.splitlines() if DAMAGED in line]
    assert re.split(r'\s{2,}', line)[1].startswith(f'damaged: {says}')
    assert report.main(['--tables', '--runs', str(tmp_path / 'runs'), '--out', str(tmp_path / 'out'),
                        '--data-dir', str(tmp_path)]) == 1
    printed = capsys.readouterr().out
    assert len([line for line in printed.splitlines() if line.startswith(f'left out: {tmp_path / "runs" / DAMAGED}: {says}')]) == 1
    tables = (tmp_path / 'out/tables.md').read_text()
    assert f'Left out of lr 0.01: {tmp_path / "runs" / DAMAGED}: {says}' in tables
    assert '| lr 0.01 | ours | | 0 | no run |' in tables
    assert [line.split(') | ')[1][:5] for line in tables.splitlines() if line.startswith('| lr 0.1 | ours (')] == ['2 | 1']
    lr_claim = [line for line in tables.splitlines() if line.startswith(('| lr 0.01 is the best', '|  | lr 0.001'))]
    assert len(lr_claim) == 2 and all(line.endswith('not run yet; lr 0.01 without seed0 (damaged) |') for line in lr_claim)


def test_metrics_whose_epochs_are_not_1_2_3_in_order_are_damaged(tmp_path):
    """Two runs' metrics.jsonl concatenated, or a line lost in the middle: each line parses, and the
    epochs say the file is not one run's. The run is damaged, and every reader is told why."""
    for name, kept in (('swapped', lambda rows: rows[::-1]), ('a line lost', lambda rows: rows[:1] + rows[2:])):
        folder = tmp_path / name
        write_run(str(folder), val_accs=(0.3, 0.4, 0.5))
        rows = (folder / 'metrics.jsonl').read_text().splitlines()
        (folder / 'metrics.jsonl').write_text('\n'.join(kept(rows)) + '\n')
        held = runs.examine(str(folder))
        assert held.state == 'damaged' and 'does not hold epochs 1, 2, 3... in order' in str(held.damaged), name
