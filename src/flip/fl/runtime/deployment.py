"""The deployment runtime on one machine: a SuperLink and one SuperNode per site on loopback.

TLS and SuperNode authentication are on by default. A run goes in with `flwr run`
as a Flower App whose ClientApp is FLIP's site ClientApp, so each site checks its
approvals and policy before it reads a row, exactly as in simulation. Across
machines the hub starts the SuperLink (`flip hub serve --flower`) and each site's
agent its SuperNode (`flip.hub.federation`, `flip.site.agent`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from flip.fl.runtime.credentials import TlsFiles, make_node_key
from flip.fl.runtime.flower import DeployedResult, DeploymentError, SuperLink, SuperNode, available
from flip.fl.tasks.base import TaskSpec

__all__ = ["DeployedResult", "Deployment", "DeploymentError", "available"]


@dataclass
class Deployment:
    """A SuperLink and one SuperNode per site on loopback; use as a context manager."""

    work: Path
    sites: dict[str, Path]
    tls: bool = True
    node_auth: bool = True
    nodes: dict[str, SuperNode] = field(default_factory=dict)
    superlink: SuperLink | None = None

    def __enter__(self) -> Deployment:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def tls_files(self) -> TlsFiles | None:
        """The SuperLink's CA, certificate and key (None without TLS)."""
        return self.superlink.tls_files if self.superlink else None

    def start(self) -> None:
        """Start the SuperLink, register the nodes' keys, start one SuperNode per site."""
        link = self.superlink = SuperLink(self.work, tls=self.tls, node_auth=self.node_auth)
        link.start()
        ca = link.tls_files.ca if link.tls_files else None
        for name, site_config in self.sites.items():
            key = None
            if self.node_auth:
                key, public = make_node_key(self.work / "node-keys", name)
                link.register(name, public)
            node = SuperNode(
                self.work, name, site_config, link.address, root_certificates=ca, key=key
            )
            self.nodes[name] = node.start()

    def kill_node(self, name: str) -> None:
        """Kill one site's SuperNode at once (SIGKILL), as a crash would."""
        self.nodes[name].kill()

    def run(
        self,
        project: str,
        spec: TaskSpec,
        rounds: int,
        round_timeout: float = 120.0,
        min_sites: int | None = None,
        evaluate_every: int | None = None,
    ) -> DeployedResult:
        """Submit the task with `flwr run` and wait for it; the sites check their approvals.

        Rounds start once `min_sites` (default all) SuperNodes are connected, and a
        site that has not answered within `round_timeout` seconds is left out of it. With
        `evaluate_every` the train replies carry the rounds' validation metrics.
        """
        if self.superlink is None:
            raise DeploymentError("start the deployment before running a task")
        run_dir = self.work / "runs" / f"run-{int(time.time() * 1000)}"
        return self.superlink.run(
            run_dir,
            project,
            spec,
            rounds=rounds,
            n_sites=len(self.nodes),
            round_timeout=round_timeout,
            min_sites=min_sites,
            evaluate_every=evaluate_every,
        )

    def stop(self) -> None:
        """Stop every SuperNode, then the SuperLink, with everything they started."""
        for node in self.nodes.values():
            node.kill()
        if self.superlink is not None:
            self.superlink.stop()
            self.superlink = None
