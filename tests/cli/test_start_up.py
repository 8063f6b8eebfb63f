"""What every `flip` command pays before it starts: the CLI's own imports."""

import subprocess
import sys

#: Modules of the hub's server side, which a researcher's or site's command never serves:
#: importing them made every `flip fl run` load FastAPI, every route and SciPy's statistics
#: (about 1 s on an idle machine, 20 s on a loaded one) before it read a file.
SERVER_SIDE = ("flip.hub.app", "fastapi", "scipy.stats", "flip.hub.routes")


def test_the_cli_loads_no_hub_server_code_until_a_command_needs_it():
    probe = f"import sys, flip.cli.app; print([m for m in {SERVER_SIDE!r} if m in sys.modules])"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    assert out.strip() == "[]"
