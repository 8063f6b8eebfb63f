"""The task contract and FLIP's built-in tasks."""

from flip.fl.tasks.base import TaskSpec, task_hash
from flip.fl.tasks.catalog import BUILT_IN, mace_modal_task, mace_task

__all__ = ["BUILT_IN", "TaskSpec", "mace_modal_task", "mace_task", "task_hash"]
