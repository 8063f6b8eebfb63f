"""flip.stats is a leaf: sites and the hub both import it, so it imports nothing of FLIP's."""

import ast
from pathlib import Path

import flip.stats

ALLOWED = {"numpy", "scipy", "math", "collections", "itertools", "hashlib", "json", "__future__"}


def test_flip_stats_imports_only_itself_numpy_scipy_and_the_standard_library():
    for path in Path(flip.stats.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top in ALLOWED or name.startswith("flip.stats"), (path.name, name)
