"""What FLIP's two web apps share (a leaf: the hub's web app and the site console both import
it, it imports neither): the stylesheet, the base page layout, the security headers, the
cookies and the CSRF tokens.

Each app serves `STATIC` beside its own static files and looks up templates in its own
folder first, then `TEMPLATES` (`layout.html`, `_csrf.html`).
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent
STATIC = HERE / "static"
TEMPLATES = HERE / "templates"
