import subprocess
import sys

from flip.fl.tasks import mace_task, task_hash


def test_hash_is_stable_across_processes_and_sensitive_to_config():
    here = task_hash(mace_task(0))
    code = "from flip.fl.tasks import mace_task, task_hash; print(task_hash(mace_task(0)))"
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert there.stdout.strip() == here
    assert task_hash(mace_task(1)) != here
    assert task_hash(mace_task(0).model_copy(update={"learning_rate": 0.3})) != here
