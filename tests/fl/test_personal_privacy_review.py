"""Review findings on evaluate_every and a site's private file of its own layers."""

import os
import stat

import pytest
from pydantic import ValidationError

from flip.fl import site_personal
from flip.fl.tasks import mace_task
from flip.site.agent import _shared_detail


def _with(value):
    spec = mace_task(scaling="fixed")
    return type(spec).model_validate({**spec.model_dump(), "evaluate_every": value})


@pytest.mark.parametrize("value", [True, 2.0])
def test_evaluate_every_refuses_bool_and_float(value):
    """A bool or float is not a round interval (server-round refuses a bool the same way)."""
    with pytest.raises(ValidationError):
        _with(value)


def test_own_digest_not_shared_with_hub():
    """The digest of the site's own layers stays at the site: the run log the agent shares
    with the hub does not name it."""
    entry = {"project": "p", "task_hash": "h", "round": 2, "answer": "a", "own": "f" * 64}
    assert "own" not in _shared_detail(entry)


def test_personal_folder_tightened(tmp_path):
    """A `personal/` folder already there open to others is made 0700 before a file of the
    site's own layers is written in it."""
    folder = tmp_path / "personal"
    folder.mkdir()
    os.chmod(folder, 0o755)
    site_personal.save(str(tmp_path / "ledger.db"), "a" * 32, {"w": [1.0]})
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
