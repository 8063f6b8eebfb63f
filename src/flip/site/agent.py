"""The site agent: polls the hub, answers cohort counts, checks tasks, joins approved runs,
releases approved analyses.

It only ever makes outbound HTTP calls. Work is idempotent at the hub (the first
answer stands), so a piece of work delivered twice is done once in effect. A work
item the agent cannot handle (it raises, the hub refuses its answer for good, or the
agent died on it) is refused with a reason and audited; the agent goes on with the rest.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import yaml
from pydantic import ValidationError

from flip.config import SiteConfig
from flip.data import deadline
from flip.data.cdm.store import open_store
from flip.data.cohort.circe import UnsupportedCirce, load_definition
from flip.data.cohort.disclosure import SiteCount
from flip.data.cohort.guard import ReleaseGuard
from flip.data.cohort.release import Refused, release
from flip.data.ledger import Ledger, LedgerTampered
from flip.fl.runtime.credentials import make_node_key
from flip.fl.runtime.flower import SuperNode
from flip.fl.tasks.base import TaskSpec, task_hash
from flip.problems import first_problem
from flip.site.analyses import Analyses
from flip.site.anchor import anchor
from flip.site.approvals import AGENT, RULE, by_person, decide
from flip.site.certify import countersign
from flip.site.hub_client import HubClient
from flip.site.in_hand import InHand
from flip.site.policy import auto_approves, query_problem, task_problem
from flip.site.status import AgentStatus, status_path

log = logging.getLogger(__name__)


class SiteAgent:
    """One site's agent.

    `config_path` is the site.yaml the agent runs with: the SuperNode it starts for a
    deployment run hands it to FLIP's ClientApp, which loads the site from it.
    """

    def __init__(self, site: SiteConfig, hub: HubClient, config_path: Path | None = None) -> None:
        self.site = site
        self.hub = hub
        self.config_path = config_path
        self.waiting = False
        self.shared: dict[int, int] = {}
        self.serving: set[int] = set()
        self.node: SuperNode | None = None
        self.anchor_seq: int | None = None
        self.refused_certificates: set[int] = set()
        self.analyses = Analyses(site, hub)
        self.quality_shared: float | None = None
        self.in_hand = InHand(Path(site.ledger).with_suffix(".in-hand"))
        self.policy_read = self._policy_mtime()

    def _policy_mtime(self) -> float | None:
        try:
            return None if self.config_path is None else self.config_path.stat().st_mtime
        except OSError:
            return None

    def _reload_policy(self) -> None:
        """Take up the policy of site.yaml again when it changed (the site console edits it);
        a file that no longer reads keeps the policy in force, and says why."""
        mtime = self._policy_mtime()
        if mtime is None or mtime == self.policy_read or self.config_path is None:
            return
        self.policy_read = mtime
        try:
            self.site.policy = SiteConfig.load(self.config_path).policy
        except (OSError, ValueError, yaml.YAMLError) as exc:
            log.error("%s: keeping the policy in force: %s", self.site.name, exc)
            with self._status() as status:
                status.failed(f"site.yaml no longer reads; the policy in force stays: {exc}")
            return
        log.info("%s: policy reloaded from %s", self.site.name, self.config_path)

    def _status(self) -> AgentStatus:
        return AgentStatus(status_path(self.site.ledger))

    def run_once(self, wait: float = 0.0) -> int:
        """Do all pending work once (long-polling up to `wait` s for some); return how many."""
        self._reload_policy()
        anchored = self._anchor()
        for certificate in anchored.get("certify") or []:
            run = certificate.get("run")
            if run in self.refused_certificates:
                continue
            try:
                refused = countersign(self.site, self.hub, certificate)
            except httpx.HTTPError:
                raise
            except Exception:
                log.exception("%s: cannot countersign run %s's certificate", self.site.name, run)
                refused = True
            if refused:
                self.refused_certificates.add(run)
        self.waiting = True
        try:
            work = self.hub.work(wait, self.serving)
        finally:
            self.waiting = False
        analyses = work.get("analyses")
        if analyses is None:  # a hub that predates analyses in the work answer
            analyses = self.hub.analyses()
        analyses = analyses if isinstance(analyses, list) else []
        with self._status() as status:
            status.polled(self.site.hub)
            status.offered(work["tasks"])
            status.offered_analyses(
                a for a in analyses if isinstance(a, dict) and a.get("round") == 0
            )
        for query in work["queries"]:
            self._safely(f"query {query['id']}", query, self._answer, self._refuse_query)
        for task in work["tasks"]:
            key = f"task {task['project_id']}/{task['hash']}"
            self._safely(key, task, self._check_task, self._refuse_task)
        for run in work["runs"]:
            self._safely(f"run {run['id']}", run, self._reply_run, self._refuse_run)
        for item in analyses:
            shown = item if isinstance(item, dict) else {}
            key = f"analysis {shown.get('id')}/{shown.get('round')}"
            self._safely(key, item, self.analyses.handle, self.analyses.refuse)
        self.analyses.forget({item.get("id") for item in analyses if isinstance(item, dict)})
        self.in_hand.forget()
        if self.site.policy.share_logs:
            self._share_logs()
        if self.site.policy.share_quality:
            self._share_quality()
        self._serve(work.get("train") or [], work.get("flower"))
        return len(work["queries"]) + len(work["tasks"]) + len(work["runs"]) + len(analyses)

    def _anchor(self) -> dict[str, Any]:
        """Show the hub the ledger's signed head (see `anchor`). A head the hub refuses for
        good (a key it does not know as this site's, say) is logged and the poll goes on:
        the hub keeps the refusal in its audit, and the site's work is not held up by it."""
        try:
            anchored = anchor(self.site, self.hub, self.anchor_seq)
        except httpx.HTTPStatusError as exc:
            if not _refused_for_good(exc.response):
                raise
            why = f"{exc.response.status_code}: {_hub_detail(exc.response)}"
            log.error("%s: the hub refused this site's ledger head (%s)", self.site.name, why)
            return {}
        self.anchor_seq = int(anchored["anchor_seq"])
        return anchored

    def _serve(self, train: list[int], flower: dict[str, Any] | None) -> None:
        """Keep a SuperNode connected to the hub's SuperLink while a joined run is running.

        The SuperNode connects outbound; its key is registered through the hub (again
        at each start: a no-op for a known key), it is started again if it died, and
        stopped when no joined run is running. Its ClientApp checks each message's task
        against this site's approvals, so it serves approved runs only.
        """
        self.serving = set(train)
        if not train or flower is None:
            self.close()
            return
        if self.node is not None and self.node.alive and self.node.superlink == flower["address"]:
            return
        if self.config_path is None:
            log.error(
                "%s: cannot serve run(s) %s without the site.yaml path", self.site.name, train
            )
            return
        folder = Path(self.site.ledger).parent / "flower"
        key = folder / "node-keys" / f"{self.site.name}.key"
        if not key.exists():
            make_node_key(key.parent, self.site.name)
        self.hub.register_node_key(key.with_suffix(".pub").read_text(encoding="ascii"))
        ca = None
        if flower.get("root_certificates"):
            ca = folder / "superlink-ca.crt"
            ca.write_text(flower["root_certificates"], encoding="ascii")
        self.close()
        node = SuperNode(
            folder,
            self.site.name,
            self.config_path,
            flower["address"],
            root_certificates=ca,
            key=key,
            hub_runs=True,
        )
        try:
            self.node = node.start()
        except OSError as exc:
            log.error("%s: cannot start flower-supernode: %s", self.site.name, exc)
            return
        log.info(
            "%s: SuperNode connecting to %s for run(s) %s", self.site.name, flower["address"], train
        )

    def close(self) -> None:
        """Stop this site's SuperNode, if one runs (it leaves the SuperLink first)."""
        if self.node is not None:
            self.node.stop()
            self.node = None

    def _safely(
        self,
        key: str,
        item: dict[str, Any],
        handle: Callable[[dict[str, Any]], None],
        refuse: Callable[[dict[str, Any], str], None],
    ) -> None:
        """Handle one work item; refuse it, with the reason audited, if handling it raises,
        if the hub refuses the answer for good (a 4xx it would give again), or if the agent
        died on it last time. Other hub errors go up (the poll backs off)."""
        kind = key.split()[0]
        if self.in_hand.died_on == key:
            log.error("%s: the agent died handling %s; refusing it", self.site.name, key)
            refuse(item, f"the site's agent stopped while handling this {kind}")
            return
        with self.in_hand.holding(key):
            try:
                with deadline.time_limit(self.site.policy.max_item_seconds):
                    handle(item)
            except deadline.TimeLimit as exc:
                log.error("%s: %s ran past its time limit; refusing it", self.site.name, key)
                self._failed(key, item, refuse, f"TimeLimit: {exc}", str(exc))
            except httpx.HTTPStatusError as exc:
                if not _refused_for_good(exc.response):
                    raise
                why = f"{exc.response.status_code}: {_hub_detail(exc.response)}"
                log.error("%s: the hub refused the answer to %s (%s)", self.site.name, key, why)
                self._failed(key, item, refuse, why, f"the hub refused this site's answer ({why})")
            except httpx.HTTPError:
                raise
            except Exception as exc:
                log.exception("%s: could not handle %s", self.site.name, key)
                first_line = (str(exc).splitlines() or [""])[0][:300]
                error = f"{type(exc).__name__}: {first_line}"
                reason = f"the site could not handle this {kind} ({type(exc).__name__})"
                self._failed(key, item, refuse, error, reason)

    def _failed(
        self,
        key: str,
        item: dict[str, Any],
        refuse: Callable[[dict[str, Any], str], None],
        error: str,
        reason: str,
    ) -> None:
        """Audit that handling `item` failed with `error`, and refuse it with `reason`; a
        refusal the hub refuses for good is logged, and the agent goes on with the rest."""
        with self._ledger() as ledger:
            ledger.record(f"{key.split()[0]}.failed", {"item": key, "error": error})
        with self._status() as status:
            status.failed(f"{key}: {error}")
        try:
            refuse(item, reason)
        except httpx.HTTPStatusError as exc:
            if not _refused_for_good(exc.response):
                raise
            log.error(
                "%s: the hub refused the refusal of %s too (%s: %s)",
                self.site.name,
                key,
                exc.response.status_code,
                _hub_detail(exc.response),
            )

    def _share_quality(self) -> None:
        """Release the store's data-quality aggregates, at most once every QUALITY_EVERY s."""
        if self.quality_shared is not None and time.monotonic() - self.quality_shared < (
            QUALITY_EVERY
        ):
            return
        from flip.data.validate.released import quality_release

        store = open_store(self.site.store, read_only=True)
        try:
            report = quality_release(store, self.site.policy.min_cell_size)
        finally:
            store.close()
        with self._ledger() as ledger:
            ledger.record("quality.released", {"checks": len(report["checks"])})
        self.hub.release_quality(report)
        self.quality_shared = time.monotonic()

    def _share_logs(self) -> None:
        """Send the hub the new entries of this site's log of each run it joined."""
        with self._ledger() as ledger:
            entries = [{**e, "detail": orjson.loads(str(e["detail"]))} for e in ledger.entries()]
        joins = [e for e in entries if e["action"] == "run.joined"]
        for join in joins:
            run_id, key = int(join["detail"]["run"]), _run_key(join["detail"])
            after = [
                j["seq"] for j in joins if j["seq"] > join["seq"] and _run_key(j["detail"]) == key
            ]
            until = min(after, default=float("inf"))
            run_log = [join] + [
                e
                for e in entries
                if join["seq"] < e["seq"] < until
                and e["action"] in ("run.stats", "run.trained", "run.refused")
                and _run_key(e["detail"]) == key
            ]
            new = [e for e in run_log if e["seq"] > self.shared.get(run_id, 0)]
            if new:
                self._share_log(run_id, new)
                self.shared[run_id] = new[-1]["seq"]

    def _share_log(self, run_id: int, entries: list[dict[str, Any]]) -> None:
        """Send the hub these entries of run `run_id`'s log, without exact split sizes (nor,
        under DP, the exact loss).
        A refusal for good (a run the
        hub no longer knows, say) is logged and audited, the entries are not sent again
        by this agent, and the poll goes on."""
        body = [
            {
                "seq": e["seq"],
                "at": str(e["at"]),
                "action": e["action"],
                "detail": _shared_detail(e["detail"]),
            }
            for e in entries
        ]
        try:
            self.hub.share_run_log(run_id, body)
        except httpx.HTTPStatusError as exc:
            if not _refused_for_good(exc.response):
                raise
            why = f"{exc.response.status_code}: {_hub_detail(exc.response)}"
            log.error("%s: the hub refused run %s's log (%s)", self.site.name, run_id, why)
            with self._ledger() as ledger:
                ledger.record(
                    "run.log.refused",
                    {"run": run_id, "entries": [e["seq"] for e in entries], "reason": why},
                )

    def run_forever(
        self,
        stop: threading.Event,
        interval: float = 2.0,
        max_backoff: float = 30.0,
        wait: float = 0.0,
    ) -> None:
        """Poll until `stop` is set, backing off while the hub is unreachable.

        `interval` is the pause between polls; with `wait` > 0 each poll is a long
        poll that the hub answers as soon as there is work.
        """
        delay = interval
        while not stop.is_set():
            try:
                self.run_once(wait)
                delay = interval
            except httpx.HTTPError as exc:
                log.warning(
                    "%s: hub unreachable (%s); retrying in %.1fs", self.site.name, exc, delay
                )
                self._poll_failed(f"hub unreachable: {exc}")
                delay = min(delay * 2, max_backoff)
            except Exception as exc:
                log.exception("%s: poll failed; retrying in %.1fs", self.site.name, delay)
                self._poll_failed(f"poll failed: {type(exc).__name__}: {exc}")
                delay = min(delay * 2, max_backoff)
            stop.wait(delay)

    def _poll_failed(self, error: str) -> None:
        """Record for the site console that this poll failed, and why (never raises)."""
        try:
            with self._status() as status:
                status.polled(self.site.hub, error)
        except Exception:
            log.exception("%s: cannot record the agent's status", self.site.name)

    def _ledger(self) -> Ledger:
        return Ledger(self.site.ledger)

    def _answer(self, query: dict[str, Any]) -> None:
        threshold = self.site.policy.min_cell_size
        try:
            definition = load_definition(query["definition"])
        except ValidationError as exc:
            self._refuse_query(query, f"invalid cohort definition: {first_problem(exc)}")
            return
        except UnsupportedCirce as exc:
            self._refuse_query(query, str(exc))
            return
        if reason := query_problem(self.site.policy, query["project_id"], definition):
            self._refuse_query(query, reason)
            return
        policy = self.site.policy
        store = open_store(self.site.store, read_only=True)
        try:
            with self._ledger() as ledger:
                guard = ReleaseGuard(
                    ledger.engine,
                    str(query["project_id"]),
                    str(query["id"]),
                    threshold,
                    policy.query_budget,
                    policy.max_audit_cells,
                )
                released = release(store, definition, threshold, guard, policy.round_counts_to)
        except Refused as exc:
            self._refuse_query(query, str(exc))
            return
        finally:
            store.close()
        with self._ledger() as ledger:
            ledger.record(
                "query.answered",
                {
                    "query": query["id"],
                    "project": query["project_id"],
                    "released": released.model_dump(),
                },
            )
        self.hub.answer_query(query["id"], released)

    def _refuse_query(self, query: dict[str, Any], reason: str) -> None:
        """Audit the refusal of a query and give the hub its reason, releasing nothing."""
        with self._ledger() as ledger:
            ledger.record(
                "query.refused",
                {"query": query["id"], "project": query.get("project_id"), "reason": reason},
            )
        nothing = SiteCount(count=None, suppressed=True, threshold=self.site.policy.min_cell_size)
        self.hub.answer_query(query["id"], nothing, error=f"refused: {reason}"[:500])

    def _check_task(self, task: dict[str, Any]) -> None:
        """Decline a task that lies about its hash or breaks the policy; approve it by a rule.

        Any other task waits for the site admin (`flip site approve` or `decline`). A
        decision a person made stands: a rule never replaces it, and the hub asking again
        is told it again (a task the policy now forbids is still declined).
        """
        project, digest = task["project_id"], task["hash"]
        with self._ledger() as ledger:
            recorded = ledger.decision(str(project), digest)
        person = recorded if recorded and by_person(recorded["decided_by"]) else None
        if person and person["decision"] == "declined":
            self.hub.decide(project, digest, "declined", person["reason"])
            return
        try:
            spec = TaskSpec.model_validate(task["spec"])
        except ValidationError as exc:
            self._refuse_task(task, f"invalid task spec: {first_problem(exc)}")
            return
        if task_hash(spec) != digest:
            reason = "the task's spec does not hash to its claimed hash"
        else:
            reason = task_problem(self.site.policy, project, spec)
        if reason:
            self._refuse_task(task, reason)
        elif person:
            self.hub.decide(project, digest, person["decision"], person["reason"])
        elif auto_approves(self.site.policy, project, spec):
            decide(self.site, self.hub, project, digest, "approved", by=RULE)

    def _refuse_task(self, task: dict[str, Any], reason: str) -> None:
        decide(
            self.site,
            self.hub,
            task["project_id"],
            task["hash"],
            "declined",
            by=AGENT,
            reason=reason[:2000],
        )

    def _reply_run(self, run: dict[str, Any]) -> None:
        with self._ledger() as ledger:
            try:
                approved = ledger.is_approved(str(run["project_id"]), run["task_hash"])
                reason = "" if approved else "the site has not approved this task"
            except LedgerTampered as exc:
                approved, reason = False, str(exc)
            status = "joined" if approved else "refused"
            detail = {"run": run["id"], "project": run["project_id"], "task_hash": run["task_hash"]}
            if approved and run.get("rounds") is not None:
                detail["rounds"] = int(run["rounds"])
            ledger.record(f"run.{status}", detail)
        self.hub.reply_run(run["id"], status, reason)

    def _refuse_run(self, run: dict[str, Any], reason: str) -> None:
        with self._ledger() as ledger:
            ledger.record(
                "run.refused",
                {
                    "run": run["id"],
                    "project": run.get("project_id"),
                    "task_hash": run.get("task_hash"),
                    "reason": reason,
                },
            )
        self.hub.reply_run(run["id"], "refused", reason[:2000])


#: Seconds between two releases of the site's data-quality aggregates.
QUALITY_EVERY = 3600.0

#: Exact split sizes the ClientApp logs for the site: never sent with a run's log (the hub
#: gets them as released, `flip.data.cohort.sizes`).
EXACT_SIZES = frozenset({"n_train", "n_test", "rows"})

#: What a round under differential privacy keeps at the site besides EXACT_SIZES: exact
#: per-site statistics its DP guarantee does not cover.
EXACT_UNDER_DP = frozenset({"loss"})

#: What a round's entry names that stays at the site whatever the privacy: the digest of its
#: own (personalised) layers, which would let the hub test a guessed copy.
SITE_ONLY = frozenset({"own"})


def _shared_detail(detail: dict[str, Any]) -> dict[str, Any]:
    """A log entry's detail as the hub may see it: no exact split sizes nor own-layer digest,
    and for a round trained under DP (`private`, or an epsilon charged) no exact loss either."""
    private = bool(detail.get("private")) or "epsilon_run" in detail
    withheld = SITE_ONLY | EXACT_SIZES | (EXACT_UNDER_DP if private else frozenset())
    return {k: v for k, v in detail.items() if k not in withheld}


#: 4xx answers that may differ if asked again: the site's credential, a timeout, a throttle.
_TRANSIENT = frozenset({401, 403, 408, 429})


def _refused_for_good(response: httpx.Response) -> bool:
    """Whether the hub refused a request in a way asking again will not change (a 4xx other
    than `_TRANSIENT`)."""
    return 400 <= response.status_code < 500 and response.status_code not in _TRANSIENT


def _hub_detail(response: httpx.Response) -> str:
    """The first thing the hub says is wrong in an error answer, with where, in brief."""
    try:
        detail = response.json()["detail"]
    except (ValueError, KeyError, TypeError):
        return response.text[:200]
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        where = ".".join(str(part) for part in detail[0].get("loc", []))
        detail = f"{where}: {detail[0].get('msg', '')}"
    return str(detail)[:200]


def _run_key(detail: dict[str, Any]) -> tuple[str, str]:
    """(project, task hash) of a ledger entry about a run."""
    return str(detail.get("project")), str(detail.get("task_hash"))
