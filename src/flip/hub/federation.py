"""The hub's Flower SuperLink: it registers the sites' SuperNode keys and runs deployment runs.

`flip hub serve --flower` starts one. When a researcher moves a deployment run
to running, the hub submits the project's task to its SuperLink; the agents of
the sites that joined start their SuperNodes, outbound, and each site's ClientApp
checks its own approvals before it reads a row. Round metrics are recorded as
the ServerApp writes them, and the run ends completed (with each site's metrics)
or failed; each round's metrics come with the next round's train replies, with
evaluate messages only after the last round (or every `TaskSpec.evaluate_every`
rounds; every round under secure aggregation: `flip.fl.carried.hub_every`).
A completed run's model is registered, with its lineage and model
card, in the hub's registry (`WORK/models`, see `flip models`). A run cancelled
while it trains is stopped on the SuperLink (`flwr stop`). A run's folder is
keyed by its hub id, so a hub restarted mid-run submits it again and the
ServerApp goes on from its last checkpoint.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from flip.bounds import loads_finite
from flip.fl.runtime.flower import DeploymentError, SuperLink
from flip.hub import audit, certificates
from flip.hub.db import now, run_rounds, run_sites, runs, sites, tasks

log = logging.getLogger(__name__)

#: The audit actor of what the hub's SuperLink does on its own.
ACTOR = "hub:flower"


class Federation:
    """A SuperLink owned by the hub, and the deployment runs in flight on it."""

    def __init__(
        self,
        work: Path,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        public_host: str | None = None,
        round_timeout: float = 300.0,
    ) -> None:
        self.work = work
        self.engine: Engine | None = None
        self.round_timeout = round_timeout
        self.superlink = SuperLink(work, host=host, port=port, public_host=public_host)
        self.threads: dict[int, threading.Thread] = {}
        self._recorded: dict[int, int] = {}
        self.changed: Callable[[], None] = lambda: None
        #: The hub's key: a completed run's certificate is signed with it.
        self.signing_key: Ed25519PrivateKey | None = None
        self._lock = threading.Lock()

    def start(self, engine: Engine) -> Federation:
        """Start the SuperLink, unregister the nodes of sites disabled meanwhile, then submit
        again every deployment run left running."""
        self.engine = engine
        self.superlink.start()
        with engine.connect() as conn:
            disabled = conn.execute(select(sites.c.name).where(sites.c.status == "disabled"))
            for site in disabled.scalars():
                try:
                    self.unregister(site)
                except DeploymentError as exc:
                    log.error("site %s is disabled; its SuperNode key: %s", site, exc)
            left = conn.execute(
                select(runs.c.id).where(runs.c.status == "running", runs.c.runtime == "deployment")
            ).scalars()
            for run_id in left:
                self.submit(run_id)
        return self

    def stop(self) -> None:
        """Stop the SuperLink (runs in flight fail and are submitted again on the next start)."""
        self.superlink.stop()

    def info(self) -> dict[str, str | None]:
        """Where SuperNodes connect, and the CA certificate (PEM) that signed the SuperLink's."""
        files = self.superlink.tls_files
        return {
            "address": self.superlink.address,
            "root_certificates": files.ca.read_text(encoding="ascii") if files else None,
        }

    def register(self, site: str, public_key: str) -> None:
        """Let the SuperNode of `site` connect with the private half of `public_key` (and
        no longer with a key it registered before)."""
        keys = self.work / "node-keys"
        keys.mkdir(parents=True, exist_ok=True)
        path = keys / f"{site}.pub"
        with self._lock:
            if path.exists() and path.read_text(encoding="ascii") == public_key:
                return
            try:
                self._unregister(site)
            except DeploymentError as exc:  # gone already, with a SuperLink database reset
                log.warning("site %s: its old SuperNode key: %s", site, exc)
            fresh = keys / f"{site}.new.pub"
            fresh.write_text(public_key, encoding="ascii")
            node = self.superlink.register(site, fresh)
            (keys / f"{site}.node").write_text(str(node), encoding="ascii")
            fresh.replace(path)

    def unregister(self, site: str) -> int | None:
        """Stop the SuperNode of `site` from connecting (a disabled site): the SuperLink
        refuses its key, so it gets no more messages of any run. The node id, or None if
        the site had no key registered."""
        with self._lock:
            return self._unregister(site)

    def _unregister(self, site: str) -> int | None:
        node_file = self.work / "node-keys" / f"{site}.node"
        if not node_file.exists():
            return None
        node = int(node_file.read_text(encoding="ascii"))
        self.superlink.unregister(node)
        node_file.unlink()
        (self.work / "node-keys" / f"{site}.pub").unlink(missing_ok=True)
        return node

    def _db(self) -> Engine:
        if self.engine is None:
            raise RuntimeError("start the federation before it runs anything")
        return self.engine

    def submit(self, run_id: int) -> None:
        """Train run `run_id` on the SuperLink in the background; record its rounds and end."""
        with self._lock:
            running = self.threads.get(run_id)
            if running is not None and running.is_alive():
                return
            thread = threading.Thread(
                target=self._run, args=(run_id,), name=f"flip-run-{run_id}", daemon=True
            )
            self.threads[run_id] = thread
        thread.start()

    def cancel(self, run_id: int) -> None:
        """Stop run `run_id` on the SuperLink, waiting for its ServerApp to start if need be."""
        run_dir = self.work / "runs" / f"run-{run_id}"
        thread = self.threads.get(run_id)
        while thread is not None and thread.is_alive():
            try:
                if self.superlink.stop_run(run_dir):
                    return
            except DeploymentError as exc:  # it may have ended meanwhile: look again
                log.warning("stopping run %s: %s", run_id, exc)
            thread.join(1.0)

    def _run(self, run_id: int) -> None:
        from flip.fl.carried import hub_every
        from flip.fl.registry import federated_lineage, register_with_best  # imports torch
        from flip.fl.strategies import sites_problem
        from flip.fl.tasks.base import TaskSpec

        with self._db().connect() as conn:
            row = conn.execute(
                select(runs.c.project_id, runs.c.rounds, tasks.c.spec)
                .join(tasks, tasks.c.id == runs.c.task_id)
                .where(runs.c.id == run_id)
            ).one()
            joined = conn.execute(
                select(run_sites.c.site_id).where(
                    run_sites.c.run_id == run_id, run_sites.c.status == "joined"
                )
            ).all()
        run_dir = self.work / "runs" / f"run-{run_id}"
        done = threading.Event()
        watcher = threading.Thread(
            target=self._watch, args=(run_id, run_dir / "rounds.jsonl", done), daemon=True
        )
        watcher.start()
        try:
            spec = TaskSpec.model_validate_json(row.spec)
            if problem := sites_problem(spec.strategy.name, spec.strategy.options, len(joined)):
                raise ValueError(problem)
            result = self.superlink.run(
                run_dir,
                str(row.project_id),
                spec,
                rounds=row.rounds,
                n_sites=len(joined),
                round_timeout=self.round_timeout,
                hub_run=run_id,
                evaluate_every=hub_every(spec, row.rounds),
            )
            record, best = register_with_best(
                self.work / "models",
                f"project{row.project_id}-run{run_id}",
                result.state_dict,
                federated_lineage(
                    spec,
                    rounds=row.rounds,
                    per_site=result.per_site,
                    round_metrics=result.rounds,
                    scaling=result.scaling,
                    project=row.project_id,
                    run=run_id,
                ),
                result.best_round,
                result.best_state_dict,
            )
            models = {"model": record.id, "model_sha256": record.lineage["sha256"]}
            models |= {"best_model": best.id} if best else {}
            outcome = ("completed", {"per_site": result.per_site, **models})
        except Exception as exc:  # any failure ends the run, with its reason (unless cancelled)
            log.warning("run %s ended without a result: %s", run_id, exc)
            outcome = ("failed", {"error": str(exc) or type(exc).__name__})
        finally:
            done.set()
            watcher.join()
        self._record_rounds(run_id, run_dir / "rounds.jsonl")
        if self.superlink.process is None:
            log.warning("run %s stopped with the SuperLink; it resumes on restart", run_id)
            return
        self._end(run_id, *outcome)

    def _watch(self, run_id: int, progress: Path, done: threading.Event) -> None:
        while not done.wait(1.0):
            self._record_rounds(run_id, progress)

    def _record_rounds(self, run_id: int, progress: Path) -> None:
        """Store each round the ServerApp has written and the hub has not stored yet.

        The database is touched only when the file has grown since the last look.
        """
        if not progress.exists():
            return
        lines = progress.read_text(encoding="utf-8").splitlines()
        entries = [loads_finite(line) for line in lines if line.strip().endswith("}")]
        if len(entries) <= self._recorded.get(run_id, 0):
            return
        try:
            with self._db().begin() as conn:
                stored = set(
                    conn.execute(
                        select(run_rounds.c.round).where(run_rounds.c.run_id == run_id)
                    ).scalars()
                )
                fresh = [
                    {
                        "run_id": run_id,
                        "round": e["round"],
                        "metrics": orjson.dumps(e["metrics"]).decode(),
                    }
                    for e in entries
                    if e["round"] not in stored
                ]
                if fresh:
                    conn.execute(insert(run_rounds), fresh)
        except IntegrityError:  # a round stored meanwhile by another writer: look again later
            return
        self._recorded[run_id] = len(entries)
        if fresh:
            self.changed()

    def _end(self, run_id: int, status: str, results: dict) -> None:
        with self._db().begin() as conn:
            current = conn.execute(select(runs.c.status).where(runs.c.id == run_id)).scalar_one()
            if current != "running":
                return
            conn.execute(
                update(runs)
                .where(runs.c.id == run_id)
                .values(status=status, results=orjson.dumps(results).decode(), updated_at=now())
            )
            audit.append(conn, ACTOR, f"run.{status}", f"run:{run_id}", results)
            if status == "completed" and self.signing_key is not None:
                certificates.issue(conn, run_id, results, self.signing_key)
        self.changed()
