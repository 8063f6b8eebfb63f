"""The task contract and FLIP's built-in tasks."""

from flip.fl.tasks.base import TaskSpec, task_hash
from flip.fl.tasks.catalog import mace_task

__all__ = ["TaskSpec", "mace_task", "task_hash"]
