"""Reproduction of the RPS-LJE paper's experiments through the running service.

Entry point: ``python -m experiments.run {debugging,overlap,stability,readable,all}
--task {german,cifar,imdb,all} --mode {quick,full}``. See ``experiments/README.md``.
"""

from experiments.settings import Mode, TaskName

__all__ = ["Mode", "TaskName"]
