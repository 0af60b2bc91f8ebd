"""The programs that drive the chapters through the study, above them: what make asks of the run
folders before and after a target's runs (checks.py), a line per run of the study (status.py),
seeds added in rounds where a verdict is open (seeds.py), and the study as a Slurm job array
(slurm.py, slurm_task.sh).

They import the chapters and bookkeeping/; nothing outside runner/ imports them. Each runs as `python -m runner.NAME`,
from the Makefile, which is their front door: make lr-sweep, make seeds, make study SLURM=...
"""
