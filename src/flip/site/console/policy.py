"""The policy page: the site's smallest released count, allowed task kinds, epsilon ceiling,
fewest training rows and auto-approve rules, edited in site.yaml with every change audited
in the ledger first (the agent takes up a changed site.yaml at its next poll)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Annotated, Any

import orjson
import yaml
from fastapi import APIRouter, Depends, Form, HTTPException, Request, status
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import ValidationError

from flip.config import AutoApproval, SiteConfig, SitePolicy
from flip.data.ledger import Ledger
from flip.site.console.pages import Admin, ConsoleRoute, csrf, page, site_of
from flip.site.policy import analysis_kind
from flip.webkit.render import problems, see_other

router = APIRouter(route_class=ConsoleRoute, dependencies=[Depends(csrf.check)])

#: The task kinds a policy may allow (those of `flip.fl.tasks.base.TaskSpec`, which loads
#: torch: a test checks the two agree).
KINDS = ("tabular-logreg", "tabular-mlp", "text-classifier", "image-cnn", "multimodal", "custom")
#: What an auto-approve rule may cover: the task kinds and the analysis kinds.
RULE_KINDS = KINDS + tuple(
    analysis_kind(k) for k in ("table1", "survival", "regression", "harmonisation")
)
RULE_PATH = PathParam(pattern=r"^[0-9a-f]{16}$", description="The rule's identity (`rule_id`).")
#: The largest whole number a policy field takes (the hub's ids and counts are 32-bit; the
#: ledger that audits a change holds no number past 64 bits).
MAX_NUMBER = 2**31 - 1


def rule_id(rule: AutoApproval) -> str:
    """A rule's identity: a hash of what it says, so a form from a page loaded before the
    rules changed can never name another rule than the one it showed."""
    text = orjson.dumps(rule.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(text).hexdigest()[:16]


def _numbers(text: str, what: str) -> list[int]:
    """Whole numbers from a comma- or space-separated field; 422 naming the field if not."""
    try:
        return [_within(int(part), what) for part in text.replace(",", " ").split()]
    except ValueError:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"{what}: give whole numbers, e.g. 3, 7"
        ) from None


def _within(value: Any, what: str) -> Any:
    """`value`, or 422 naming the field if it is a whole number past MAX_NUMBER."""
    if isinstance(value, int) and abs(value) > MAX_NUMBER:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"{what}: at most {MAX_NUMBER}")
    return value


def _optional(text: str, kind: type, what: str) -> Any:
    text = text.strip()
    if not text:
        return None
    try:
        return _within(kind(text), what)
    except ValueError:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"{what}: {text!r} is not a number"
        ) from None


def change_policy(config_path: Path, by: str, updates: dict[str, Any]) -> dict[str, list]:
    """Apply `updates` to site.yaml's policy: checked whole, audited in the ledger, then
    written; the changes as field -> [before, after] (none: nothing written)."""
    raw = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    site = SiteConfig.load(config_path)
    before = site.policy.model_dump(mode="json")
    try:
        policy = SitePolicy.model_validate(before | updates)
    except ValidationError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, problems(exc)) from None
    after = policy.model_dump(mode="json")
    changes = {k: [before[k], after[k]] for k in after if after[k] != before[k]}
    if not changes:
        return {}
    with Ledger(site.ledger) as ledger:
        ledger.record("policy.changed", {"by": by, "changes": changes})
    kept = raw.get("policy") or {}
    raw["policy"] = kept | {k: after[k] for k in changes}
    written = config_path.with_name(f".{config_path.name}.new")
    written.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    os.chmod(written, config_path.stat().st_mode & 0o777)
    os.replace(written, config_path)
    return changes


@router.get("/policy")
def policy_page(request: Request, who: Admin, done: str | None = None):
    """The policy as it stands, with forms to change it."""
    site = site_of(request)
    with Ledger(site.ledger) as ledger:
        history = [e for e in reversed(ledger.entries()) if e["action"] == "policy.changed"]
    return page(
        request,
        "policy.html",
        policy=site.policy,
        rules=[(rule_id(rule), rule) for rule in site.policy.auto_approve],
        kinds=KINDS,
        rule_kinds=RULE_KINDS,
        history=history[:20],
        done=done,
    )


@router.post("/policy")
async def set_policy(
    request: Request,
    who: Admin,
    min_cell_size: Annotated[int, Form(le=MAX_NUMBER)],
    kinds: Annotated[list[str], Form()] = [],  # noqa: B006 - FastAPI copies defaults
    max_epsilon: Annotated[str, Form(max_length=40)] = "",
    min_rows: Annotated[str, Form(max_length=40)] = "",
    share_quality: Annotated[bool, Form()] = False,
) -> Response:
    """Change the main settings."""
    updates = {
        "min_cell_size": min_cell_size,
        "share_quality": share_quality,
        "allowed_task_kinds": [k for k in KINDS if k in kinds],
        "max_epsilon": _optional(max_epsilon, float, "max epsilon"),
        "min_rows": _optional(min_rows, int, "minimum training rows"),
    }
    path = request.app.state.config_path
    changes = await run_in_threadpool(change_policy, path, who, updates)
    return see_other(f"/policy?done={'changed' if changes else 'unchanged'}")


@router.post("/policy/rules")
async def add_rule(
    request: Request,
    who: Admin,
    kinds: Annotated[list[str], Form()] = [],  # noqa: B006 - FastAPI copies defaults
    projects: Annotated[str, Form(max_length=500)] = "",
    max_rounds: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    """Add an auto-approve rule."""
    try:
        rule = AutoApproval(
            kinds=[k for k in RULE_KINDS if k in kinds],
            projects=_numbers(projects, "projects") or None,
            max_rounds=_optional(max_rounds, int, "max rounds"),
        )
    except ValidationError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, problems(exc)) from None
    site = site_of(request)
    rules = [r.model_dump(mode="json") for r in site.policy.auto_approve]
    updates = {"auto_approve": [*rules, rule.model_dump(mode="json")]}
    await run_in_threadpool(change_policy, request.app.state.config_path, who, updates)
    return see_other("/policy?done=rule-added")


@router.post("/policy/rules/{rule}/delete")
async def delete_rule(request: Request, who: Admin, rule: Annotated[str, RULE_PATH]) -> Response:
    """Remove the auto-approve rule whose identity is `rule`; 409 when no rule has it now (the
    rule changed or was removed since the page was loaded)."""
    site = site_of(request)
    ids = [rule_id(r) for r in site.policy.auto_approve]
    if rule not in ids:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            "that auto-approve rule changed or was removed since the page was loaded: "
            "reload the policy page and choose again",
        )
    rules = [r.model_dump(mode="json") for r in site.policy.auto_approve]
    del rules[ids.index(rule)]
    await run_in_threadpool(
        change_policy, request.app.state.config_path, who, {"auto_approve": rules}
    )
    return see_other("/policy?done=rule-removed")
