# The report's study, one target per experiment (settings as in REPORT.md, "The experiments").
#
#   make test                     the tests (CPU, a few minutes)
#   make lr-sweep                 runs/lr-sweep/lr0.1/seed0/, lr0.01/seed0/, lr0.001/seed0/
#   make -j3 lr-sweep             the same, three runs at once
#   make lr-sweep ARGS='--epochs 1 --train-subset 512 --eval-subset 256'   a try in a minute
#   make lr-sweep SEEDS='0 1 2'   every setting once per seed
#   make study                    all seven experiments, 14 runs
#   make figures, make tables     the report's figures and tables from the runs, in figures/
#   make bench                    training speed, ours (eager and compiled) against the usual DataLoader pipeline
#
# A run whose summary.json exists is finished and is not run again; a run with a checkpoint
# but no summary was interrupted and continues where it stopped (--resume). Every target
# creates the virtual environment from requirements.txt first if it is missing.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
ARGS ?=
SEEDS ?= 0
RUNS ?= runs

EXPERIMENTS := lr-sweep schedule wd erase erase-p erase-scale erase-ratio
.PHONY: test bench figures tables study $(EXPERIMENTS)

$(VENV)/installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	touch $@

test: $(VENV)/installed
	$(PY) -m pytest -q tests

# Training speed of this project's pipeline against the usual DataLoader one (bench.py).
bench: $(VENV)/installed
	$(PY) bench.py --compile

# The report's tables and figures from the runs under $(RUNS), into figures/ (report.py).
figures: $(VENV)/installed
	$(PY) report.py --figures --runs $(RUNS)
tables: $(VENV)/installed
	$(PY) report.py --tables --runs $(RUNS)

# $(call experiment,NAME,SETTING,FLAGS): the target NAME gains the runs of one setting, one per
# seed, each in $(RUNS)/NAME/SETTING/seedN/. ARGS come last, so they override FLAGS.
define experiment
$(1): $(foreach seed,$(SEEDS),$(RUNS)/$(1)/$(2)/seed$(seed)/summary.json)
$(RUNS)/$(1)/$(2)/seed%/summary.json: | $(VENV)/installed
	$(PY) train.py $(3) --seed $$* --out $$(@D) $$(ARGS) $$(if $$(wildcard $$(@D)/checkpoint.pt),--resume)
endef

# 1. Learning rate: 15 epochs, constant rate, no weight decay.
$(eval $(call experiment,lr-sweep,lr0.1,--epochs 15 --lr 0.1))
$(eval $(call experiment,lr-sweep,lr0.01,--epochs 15 --lr 0.01))
$(eval $(call experiment,lr-sweep,lr0.001,--epochs 15 --lr 0.001))
# 2. Schedule: the best rate, 300 epochs, constant against cosine annealing.
$(eval $(call experiment,schedule,constant,--epochs 300 --lr 0.01))
$(eval $(call experiment,schedule,cosine,--epochs 300 --lr 0.01 --cosine))
# 3. Weight decay, with cosine annealing.
$(eval $(call experiment,wd,wd5e-4,--epochs 300 --lr 0.01 --cosine --wd 5e-4))
$(eval $(call experiment,wd,wd1e-2,--epochs 300 --lr 0.01 --cosine --wd 1e-2))
# 4-7. Random erasing on top of the report's chosen setting, one knob at a time.
BEST := --epochs 300 --lr 0.01 --cosine --wd 5e-4
$(eval $(call experiment,erase,p1.0,$(BEST) --erase-p 1.0 --erase-scale 0.02 0.33 --erase-ratio 0.3 3.3))
$(eval $(call experiment,erase-p,p0.8,$(BEST) --erase-p 0.8 --erase-scale 0.02 0.33 --erase-ratio 0.3 3.3))
$(eval $(call experiment,erase-p,p0.5,$(BEST) --erase-p 0.5 --erase-scale 0.02 0.33 --erase-ratio 0.3 3.3))
$(eval $(call experiment,erase-scale,scale0.17-0.5,$(BEST) --erase-p 1.0 --erase-scale 0.17 0.5 --erase-ratio 0.3 3.3))
$(eval $(call experiment,erase-scale,scale0.33-0.67,$(BEST) --erase-p 1.0 --erase-scale 0.33 0.67 --erase-ratio 0.3 3.3))
$(eval $(call experiment,erase-ratio,ratio0.9-1.1,$(BEST) --erase-p 1.0 --erase-scale 0.02 0.33 --erase-ratio 0.9 1.1))
$(eval $(call experiment,erase-ratio,ratio0.2-5.0,$(BEST) --erase-p 1.0 --erase-scale 0.02 0.33 --erase-ratio 0.2 5.0))

study: $(EXPERIMENTS)
