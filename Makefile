# The report's study, one target per experiment of study.toml (docs/study.md describes them).
#
#   make test                     the tests; on a GPU machine the CUDA ones too (skipped, with the reason, elsewhere)
#   make test-quick               the tests without the slow ones: a student's check while rewriting a module
#   make mutants                  plausible bugs made one at a time, each against the quick tier: a verdict each, and the count
#   make lr-sweep                 runs/lr-sweep/lr0.1/seed0/, lr0.01/seed0/, lr0.001/seed0/
#   make -j3 lr-sweep             the same, three runs at once
#   make lr-sweep PY=$(which python)   the same with that Python's torch (Colab's, conda's, a module's): no .venv
#   make lr-sweep RUNS=runs-try ARGS='--epochs 1 --train-subset 512 --eval-subset 256'   a try in minutes, in its own folder
#   make lr-sweep SEEDS='0 1 2'   every setting once per seed
#   make study                    every experiment of study.toml: the report's seven, 14 runs
#   make -j4 study GPUS='0 1 2 3' the same on four GPUs: each run takes one that no other run holds, as it starts
#   make status                   a line per run: finished, running, interrupted, diverged or not started (EXP=wd: one experiment)
#   make study SLURM='--gres=gpu:1 --time=6:00:00'   every unfinished run, as one Slurm job array (runner/slurm.py)
#   make seeds EXP='lr-sweep schedule' MAX_SEEDS=5   seeds in rounds, only where a comparison is within noise (runner/seeds.py)
#   make figures, make tables     the report's figures and tables from the runs, in figures/
#   make bench                    training speed, ours (eager and compiled) against the usual DataLoader pipeline
#   make handout OUT=DIR          the course's handout: the chapters with their exercises blank; in it, make grade (course/)
#   make grade-class SUBMISSIONS=DIR OUT=grades.csv   a class graded, each submission fenced: a gradebook and feedback
#
# A run whose summary.json exists has ended (finished, or diverged) and is not run again; a run
# with a checkpoint but no summary was interrupted and continues where it stopped (--resume). Both
# only if the run in the folder was made with the flags asked for: else make names it and stops,
# and FORCE=1 starts it over. A run that diverged is a result: make goes on with the others.
# Every target creates the virtual environment from requirements.txt first if it is missing, unless
# PY= names the Python to use (make lr-sweep PY=$(which python): Colab's, a conda environment's).

PYTHON ?= python3
VENV := .venv
ARGS ?=
SEEDS ?= 0
RUNS ?= runs
GPUS ?=
SLURM ?=
EXP ?=
FORCE ?=
MAX_SEEDS ?= 5

EXPERIMENTS :=
.PHONY: test test-quick mutants bench figures tables status study seeds handout grade grade-class autograder

# The Python every target runs: .venv's, made the first time from requirements.txt at the versions
# of requirements.lock; or yours, make test PY=/path/to/python (Colab's, Kaggle's, a conda
# environment's, a cluster module's), which makes no .venv: before a target runs, it is checked for
# what the target needs (NEEDS, each target's own: make hands them to python-checked), and what it
# lacks is one line (bookkeeping/environment.py). make reads study.toml with it too, and a Slurm
# job's tasks run with it. Only PY= on make's command line does this: PY in the environment is not
# read, so that a stray one cannot turn .venv off. (Without PY=, PYTHON makes .venv and reads study.toml.)
ifeq ($(origin PY),command line)
ifeq ($(shell command -v '$(PY)'),)
$(error PY=$(PY) is not a program here: name a Python, as PY=$$(which python) does)
endif
READY := python-checked
PYTHON := $(PY)
else
PY := $(VENV)/bin/python
READY := $(VENV)/installed
endif
NEEDS := torch numpy
test test-quick mutants handout grade grade-class autograder: NEEDS += torchvision pytest matplotlib
test: NEEDS += nbclient ipykernel nbformat
figures tables: NEEDS += matplotlib
bench: NEEDS += torchvision pillow

$(VENV)/installed: requirements.txt requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt -c requirements.lock
	touch $@
python-checked:
	@$(PY) -m bookkeeping.environment $(NEEDS)
.PHONY: python-checked

# Every test, in two pytest processes at once: about half of the suite's time waits on the processes
# its tests start (a Slurm cluster, a notebook kernel, a class graded). test_classroom, test_fence and
# test_apart share one, since their fenced workers take the machine's users by slot number;
# TESTS_BESIDE lists them, with other slow modules to even the two. That one writes its report to a
# temporary file, printed once both have ended; the other prints as it runs. Each has half the cores'
# threads, rounded up (OMP_NUM_THREADS, which the processes the tests start inherit). make test fails
# if either fails; Ctrl-C stops both. MAKEFLAGS is unset so that make's own -j or -s does not reach
# the make commands the tests run.
TESTS_BESIDE := tests/test_classroom.py tests/test_fence.py tests/test_apart.py tests/test_handout.py \
	tests/test_notebook.py tests/test_study.py tests/test_seeds.py tests/test_augment.py
PYTEST = env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL OMP_NUM_THREADS=$$threads $(PY) -m pytest -q -rs --durations=6
test: $(READY)
	@beside=$$(mktemp) || exit 1; threads=$$(( ($$(getconf _NPROCESSORS_ONLN) + 1) / 2 )); \
	$(PYTEST) $(TESTS_BESIDE) > "$$beside" 2>&1 & pid=$$!; \
	trap 'kill $$pid 2>/dev/null; rm -f "$$beside"' EXIT; trap 'exit 130' INT TERM; \
	$(PYTEST) $(addprefix --ignore=,$(TESTS_BESIDE)) tests; rest=$$?; \
	wait $$pid; status=$$?; echo; cat "$$beside"; \
	echo "make test: exit status $$rest for the other tests, $$status for the grader's and those beside them"; \
	[ $$rest = 0 ] && [ $$status = 0 ]

# Every test but the slow ones (whole ResNet-18 runs in processes of their own, torch.compile, several runs at once, a Slurm cluster).
test-quick: $(READY)
	$(PY) -m pytest -q -rs -m 'not slow' tests

# The bar the quick tier is held to: each plausible bug of tests/mutants.toml made alone in a scratch copy of
# the project, two at a time, and the quick tier run against it; a verdict a bug, and the count (tests/mutants.py).
mutants: $(READY)
	$(PY) tests/mutants.py

# Training speed of this project's pipeline against the usual DataLoader one (bench.py).
bench: $(READY)
	$(PY) bench.py --compile

# The report's tables and figures from the runs under $(RUNS), into figures/ (report.py).
figures: $(READY)
	$(PY) report.py --figures --runs $(RUNS)
tables: $(READY)
	$(PY) report.py --tables --runs $(RUNS)

# A line per run of the study, or of the experiments in EXP: its state, epoch, accuracy and time (runner/status.py).
status: | $(READY)
	@$(PY) -m runner.status $(if $(EXP),$(foreach e,$(EXP),$(FOLDERS_$(e))),$(FOLDERS_study))

# The course's handout: a copy of the project in OUT with each exercise left blank and the hidden tests
# left out (course/handout.py); the grade of a copy, exercise by exercise (course/grade.py; ARGS=--json).
handout: $(READY)
	@$(if $(OUT),,$(error make handout OUT=DIR: name a new folder for the student's copy))
	$(PY) -m course.handout '$(OUT)'
grade: $(READY)
	$(PY) -m course.grade $(ARGS)

# A class's submissions in SUBMISSIONS (a folder, .zip or .tar.gz per student, named by id), each graded
# against the instructor's tests, hidden ones included, its code in a fenced worker apart from them:
# the gradebook OUT, and feedback/ beside it (course/classroom.py). -j N grades N at once; TIMEOUT=
# the seconds a test may run.
grade-class: $(READY)
	@$(if $(and $(SUBMISSIONS),$(OUT)),,$(error make grade-class SUBMISSIONS=DIR OUT=grades.csv: name both))
	$(PY) -m course.classroom '$(SUBMISSIONS)' --out '$(OUT)' --jobs='$(filter -j%,$(MAKEFLAGS))' \
		$(if $(TIMEOUT),--test-timeout '$(TIMEOUT)') $(ARGS)

# The same grade on Gradescope: OUT, a zip of the instructor's copy with setup.sh and run_autograder,
# which grades one submission as grade-class does and writes Gradescope's results.json (course/autograder.py).
autograder: $(READY)
	@$(if $(OUT),,$(error make autograder OUT=autograder.zip: name the zip to upload))
	$(PY) -m course.autograder build '$(OUT)'

# Seeds only where a verdict is open: rounds of runs, each planned from the runs so far, up to
# MAX_SEEDS a setting, for the claims' comparisons within the experiments in EXP (default: all).
# Each round runs through make (-j, GPUS, make's checks) or, with SLURM, as one job array it waits
# for (runner/seeds.py). $(MAKE) on the line hands make's job slots to the make of each round.
seeds: | $(READY)
	$(PY) -m runner.seeds --make='$(MAKE)' --runs='$(RUNS)' --max-seeds='$(MAX_SEEDS)' --exp='$(EXP)' --args='$(ARGS)' \
		--gpus='$(GPUS)' $(if $(SLURM),--sbatch='$(SLURM)')

# $(call experiment,NAME,SETTING,FLAGS): the experiment NAME gains the runs of one setting, one per
# seed, each in $(RUNS)/NAME/SETTING/seedN/ (listed in FOLDERS_NAME, its flags in ASKED_folder).
# ARGS come last, so they override FLAGS. GPUS='0 1 2 3': each run takes a GPU of these that no
# other run holds, as it starts, and waits for one if all are taken (train.py --gpu-pool).
# A run that diverged exits with status 3: it has ended, with its summary.json, and make goes on.
experiment = $(if $(filter $(1),$(EXPERIMENTS)),,$(eval EXPERIMENTS += $(1)))$(foreach seed,$(SEEDS),$(eval $(call run,$(1),$(2),$(3),$(seed))))
define run
FOLDERS_$(1) += $(RUNS)/$(1)/$(2)/seed$(4)
ASKED_$(RUNS)/$(1)/$(2)/seed$(4) := $(3) --seed $(4)
$(RUNS)/$(1)/$(2)/seed$(4)/summary.json: | $(READY)
	$(PY) train.py $(3) --seed $(4) --out $$(@D)$(if $(GPUS), --gpu-pool $(GPUS)) $$(ARGS) $$(call continue,$$(@D)) || [ $$$$? = 3 ]
endef
# Start over a run made with other flags (FORCE=1), or continue an interrupted one from its checkpoint
# (runner/checks.py says which, from bookkeeping/runs.py's examine).
continue = $(if $(filter $(1),$(STALE)),--force,$(if $(filter $(1),$(RESUME)),--resume))

# The study's experiments and their settings, from study.toml: a $(call experiment,NAME,SETTING,FLAGS)
# for each setting, which adds NAME to EXPERIMENTS. python3 -m bookkeeping.study prints them.
$(eval $(shell $(PYTHON) -m bookkeeping.study))
ifneq ($(.SHELLSTATUS),0)
$(error study.toml was not read: the line above says why)
endif

FOLDERS_study := $(foreach e,$(EXPERIMENTS),$(FOLDERS_$(e)))
.PHONY: $(EXPERIMENTS)

# The runs' folder, RUNS, made before any run starts (make -n makes nothing: it only looks); or one
# line why it cannot be, and nothing runs.
ifneq ($(filter $(EXPERIMENTS) study seeds,$(MAKECMDGOALS)),)
RUNS_CANNOT := $(shell $(PYTHON) -m bookkeeping.environment $(if $(findstring n,$(firstword -$(MAKEFLAGS))),--could-make,--folder) '$(RUNS)' 2>&1)
$(if $(RUNS_CANNOT),$(error RUNS=$(RUNS): $(RUNS_CANNOT)))
endif

# Before any run, the runs asked for that have a folder already must be what their target asks:
# a finished quick try (ARGS='--epochs 1') is not the real run. runner/checks.py names each that
# differs, and how, and exits 1: make stops there. With FORCE=1 it lists them in $(CHECKED)/stale,
# and they start over (STALE). It lists each folder with a damaged file in $(CHECKED)/damaged,
# which make leaves alone and goes on without (DAMAGED). $(CHECKED) is this make's own folder:
# the makes of a Slurm array's tasks check the same RUNS at once.
ASKED := $(foreach g,$(MAKECMDGOALS),$(FOLDERS_$(g)) $(patsubst %/summary.json,%,$(filter %/summary.json,$(g))))
HELD := $(strip $(foreach f,$(ASKED),$(if $(wildcard $(f)/config.json $(f)/summary.json $(f)/checkpoint.pt),$(f))))
ifneq ($(HELD),)
CHECKED := $(shell mktemp -d)
$(shell $(PY) -m runner.checks before $(if $(FORCE),--force) --args '$(ARGS)' --into '$(CHECKED)' $(foreach f,$(HELD),$(f) '$(ASKED_$(f))'))
CHECK_STATUS := $(.SHELLSTATUS)
STALE := $(file < $(CHECKED)/stale)
DAMAGED := $(file < $(CHECKED)/damaged)
RESUME := $(file < $(CHECKED)/resume)
$(shell rm -rf '$(CHECKED)')
ifneq ($(CHECK_STATUS),0)
$(error run folders above hold other runs than asked for)
endif
endif
# With FORCE=1 they run again, summary.json or not: a phony prerequisite is never up to date.
$(addsuffix /summary.json,$(STALE)): start-over
.PHONY: start-over

ifeq ($(SLURM),)
# An experiment is made of its runs' summaries: make runs those that are missing. Then, if it was
# asked for by name, it says which of its runs diverged, and which it left out as damaged (runner/checks.py).
$(foreach e,$(EXPERIMENTS),$(eval $(e): $(addsuffix /summary.json,$(filter-out $(DAMAGED),$(FOLDERS_$(e))))))
study: $(EXPERIMENTS)
$(EXPERIMENTS) study:
	@$(if $(filter $@,$(MAKECMDGOALS)),$(PY) -m runner.checks ended $(FOLDERS_$@))
else
# With SLURM, a target submits its unfinished runs as one Slurm job array instead, a task per run,
# each of which runs its run through make, on a GPU of the cluster's (runner/slurm.py), with the
# Python that PY= names, if it was given (a cluster module's torch): else with .venv's.
$(EXPERIMENTS) study: | $(READY)
	$(PY) -m runner.slurm --sbatch='$(SLURM)' --name $@ --runs '$(RUNS)' --make 'RUNS=$(RUNS)' --make 'SEEDS=$(SEEDS)' \
		--make 'ARGS=$(ARGS)' $(if $(filter command line,$(origin PY)),--make 'PY=$(PY)') $(if $(FORCE),--make FORCE=1 $(addprefix --start-over ,$(filter $(FOLDERS_$@),$(STALE)))) $(FOLDERS_$@)
endif
