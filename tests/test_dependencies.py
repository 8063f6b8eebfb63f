"""What FLIP needs at run time is in pyproject's dependencies; what only tests need is in dev.

scikit-learn was a run-time dependency though no code path imports it (the splits are
FLIP's own `shuffle_split`, XGBoost runs without it): only tests compare against it.
"""

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Imports every FLIP module with `sklearn` made unimportable; prints those that need it.
WITHOUT_SKLEARN = """
import importlib, pkgutil, sys
class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name == "sklearn" or name.startswith("sklearn."):
            raise ImportError("No module named 'sklearn' (blocked)")
sys.meta_path.insert(0, Blocked())
import flip
needs = []
for module in pkgutil.walk_packages(flip.__path__, "flip."):
    if ".migrations." in module.name or module.name.endswith("__main__"):
        continue
    try:
        importlib.import_module(module.name)
    except ImportError as exc:
        if "sklearn" in str(exc):
            needs.append(module.name)
import xgboost, opacus, monai.networks.nets  # libraries FLIP trains with
print(",".join(needs))
"""


def _requirement_names(requirements: list[str]) -> set[str]:
    return {
        r.split(";")[0].split("[")[0].split("=")[0].split("<")[0].split(">")[0].strip()
        for r in requirements
    }


def test_scikit_learn_is_a_test_dependency_only():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "scikit-learn" not in _requirement_names(project["dependencies"])
    assert "scikit-learn" in _requirement_names(project["optional-dependencies"]["dev"])
    found = subprocess.run(
        [sys.executable, "-c", WITHOUT_SKLEARN],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert found.returncode == 0, found.stderr[-2000:]
    assert found.stdout.strip() == "", f"these modules import sklearn: {found.stdout}"
