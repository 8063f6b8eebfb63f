"""What a site admin reads before deciding on a task: its code (highlighted) and what changed
since the version of it this site last approved, the privacy it asks for, the tables and
concepts it reads, and how many of this site's rows it would train on."""

from __future__ import annotations

import difflib
import inspect
from typing import TYPE_CHECKING, Any

import orjson
from markupsafe import Markup, escape
from pydantic import ValidationError

from flip.config import SiteConfig
from flip.data.ledger import Ledger
from flip.site.status import AgentStatus

if TYPE_CHECKING:  # the task contract loads torch and Flower: only when a task is reviewed
    from flip.fl.tasks.base import TaskSpec


def code_text(spec: dict[str, Any]) -> str:
    """What a site approves, as text: the configuration (pretty JSON) and the code it runs (a
    custom task's own module, or FLIP's modules for a built-in kind)."""
    config = orjson.dumps(spec, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2).decode()
    parts = ["# configuration (task spec)", config]
    if spec.get("code"):
        parts += ["# the task's own code", str(spec["code"])]
    else:
        parts.append(f"# FLIP's code for kind {spec.get('kind')}")
        try:
            from flip.fl.tasks.models import code_modules

            modules = code_modules(str(spec.get("kind")))
        except (ValueError, KeyError) as exc:
            return "\n".join([*parts, f"# (unknown kind: {exc})"])
        for module in modules:
            parts += [f"# --- {module.__name__}", inspect.getsource(module)]
    return "\n".join(parts)


def highlighted(text: str, language: str) -> Markup:
    """`text` as HTML with classes for its tokens (pygments; plain when it is missing)."""
    try:
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import DiffLexer, PythonLexer
    except ImportError:
        return Markup(f'<pre class="code">{escape(text)}</pre>')
    lexer = DiffLexer() if language == "diff" else PythonLexer()
    return Markup(highlight(text, lexer, HtmlFormatter(cssclass="code")))


def code_css() -> str:
    """The stylesheet of highlighted code (pygments' default style, whose colours pass AA)."""
    try:
        from pygments.formatters import HtmlFormatter
    except ImportError:
        return ""
    return HtmlFormatter(style="default").get_style_defs(".code")


def last_approved(ledger: Ledger, status: AgentStatus, project: str, offered: dict) -> dict | None:
    """The version of this task (same name) this site approved last in the same project, other
    than this one; failing that, the last it approved in another project, marked
    `other_project` (the page says so)."""
    name = offered["spec"].get("name")
    entries = [e for e in ledger.entries() if e["action"] == "task.approved"]
    elsewhere = None
    for entry in reversed(entries):
        detail = orjson.loads(str(entry["detail"]))
        digest = str(detail.get("task_hash"))
        if digest == offered["task_hash"]:
            continue
        earlier = status.task(str(detail.get("project")), digest)
        if earlier is None or earlier["spec"].get("name") != name:
            continue
        found = earlier | {"approved_at": entry["at"], "approved_by": detail.get("by")}
        if str(earlier["project"]) == str(project):
            return found | {"other_project": False}
        elsewhere = elsewhere or found | {"other_project": True}
    return elsewhere


def diff(before: str, after: str, old: str, new: str) -> str:
    """A unified diff of two versions' text."""
    lines = difflib.unified_diff(
        before.splitlines(), after.splitlines(), fromfile=old, tofile=new, lineterm=""
    )
    return "\n".join(lines)


def privacy(spec: TaskSpec, site: SiteConfig) -> dict[str, Any]:
    """The differential privacy the task asks for, and the site's ceiling."""
    ceiling = site.policy.max_epsilon
    if spec.privacy is None:
        return {"asked": None, "ceiling": ceiling}
    asked: dict[str, Any] = {
        "level": spec.privacy.level,
        "clipping": spec.privacy.clipping,
        "noise_multiplier": spec.privacy.noise_multiplier,
        "delta": spec.privacy.delta,
        "rounds": spec.rounds,
        "epsilon": None,
    }
    if spec.privacy.level == "site" and spec.rounds is not None:
        try:
            asked["epsilon"] = spec.privacy.epsilon(spec.rounds)
        except (ArithmeticError, ValueError) as exc:
            asked["problem"] = f"epsilon cannot be computed ({exc})"
    return {"asked": asked, "ceiling": ceiling}


def concepts(spec: TaskSpec) -> list[tuple[str, list[int]]]:
    """The concepts the task reads, by what it reads them for."""
    data = spec.data
    found = [("cohort entry (measurement)", data.entry_concept_ids)]
    found += [(f"feature {f.name} ({f.source})", f.concept_ids) for f in data.features]
    if data.outcome_concept_ids:
        found.append((f"outcome ({data.outcome})", data.outcome_concept_ids))
    found += [(f"outcome class {c.name}", c.concept_ids) for c in data.outcome_classes]
    return [(why, ids) for why, ids in found if ids]


def named(
    read: list[tuple[str, list[int]]], site: SiteConfig
) -> tuple[list[tuple[str, list[tuple[int, str | None]]]], str | None]:
    """Each concept the task reads beside its name in this site's vocabulary (None where the
    vocabulary lacks it), and why no names could be read (a busy or missing store), if so."""
    from flip.data.cdm.names import concept_names
    from flip.data.cdm.store import open_store

    try:
        store = open_store(site.store, read_only=True)
        try:
            with store.connect() as conn:
                names = concept_names(conn, (i for _, ids in read for i in ids))
        finally:
            store.close()
        problem = None
    except Exception as exc:  # a busy or missing store is shown, not raised
        names, problem = {}, f"the store cannot be read now ({type(exc).__name__}: {exc})"
    return [(why, [(i, names.get(i)) for i in ids]) for why, ids in read], problem


def rows(spec: TaskSpec, site: SiteConfig) -> dict[str, Any]:
    """How many of this site's rows the task would train and test on (its cohort, opted-out
    patients left out, split by its seed), and whether the policy's minimum is met."""
    from flip.data.cdm.store import open_store
    from flip.data.features.tabular import extract_raw

    tabular = spec.data.model_copy(update={"text": None, "image": None})
    try:
        store = open_store(site.store, read_only=True)
        try:
            data = extract_raw(store, tabular)
        finally:
            store.close()
    except Exception as exc:  # a busy or missing store is shown, not raised
        return {"problem": f"the store cannot be read now ({type(exc).__name__}: {exc})"}
    if len(data.y) < 2:
        return {"train": 0, "test": len(data.y), "minimum": site.policy.fewest_rows()}
    stratify = spec.data.outcome != "regression"
    train, test = data.split(spec.test_fraction, spec.seed, stratify=stratify)
    return {"train": len(train.y), "test": len(test.y), "minimum": site.policy.fewest_rows()}


def review(
    site: SiteConfig, ledger: Ledger, status: AgentStatus, offered: dict, *, count_rows: bool
) -> dict[str, Any]:
    """Everything the task's page shows about an offered task."""
    from flip.fl.tasks.base import TaskSpec, task_hash
    from flip.site.policy import auto_approves, task_problem, task_tables

    project = offered["project"]
    decision = ledger.decision(project, offered["task_hash"])
    found: dict[str, Any] = {"task": offered, "decision": decision}
    text = code_text(offered["spec"])
    found["code"] = highlighted(text, "python")
    earlier = last_approved(ledger, status, project, offered)
    found["earlier"] = earlier
    if earlier is not None:
        changes = diff(
            code_text(earlier["spec"]),
            text,
            earlier["task_hash"][:12],
            offered["task_hash"][:12],
        )
        found["diff"] = highlighted(changes, "diff") if changes else None
    try:
        spec = TaskSpec.model_validate(offered["spec"])
    except ValidationError as exc:
        found["invalid"] = str(exc.errors()[0]["msg"])
        return found
    found["hash_matches"] = task_hash(spec) == offered["task_hash"]
    found["policy_problem"] = task_problem(site.policy, project, spec)
    found["auto_approved"] = auto_approves(site.policy, int(project), spec)
    found["privacy"] = privacy(spec, site)
    found["personal"] = (
        {"mode": spec.personal, "ditto_lambda": spec.ditto_lambda} if spec.personal else None
    )
    found["tables"] = sorted(task_tables(spec))
    if count_rows:
        found["concepts"], found["names_problem"] = named(concepts(spec), site)
        found["rows"] = rows(spec, site)
    else:
        found["concepts"] = [(why, [(i, None) for i in ids]) for why, ids in concepts(spec)]
        found["rows"] = None
    return found
