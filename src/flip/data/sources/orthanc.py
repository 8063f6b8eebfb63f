"""A local Orthanc PACS with its DICOMweb plugin (Debian's `orthanc` and `orthanc-dicomweb`),
run as a plain process on free loopback ports with its own storage folder.

The demos and tests start one to hold images that FLIP then reads over DICOMweb, as it
reads a hospital's PACS. `orthanc_binary()` says whether one can be started here.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from flip.ports import free_port

#: Where Debian's orthanc-dicomweb package puts its plugin.
PLUGIN_DIRS = (Path("/usr/share/orthanc/plugins"), Path("/usr/lib/orthanc"))
#: Where Debian's orthanc package puts the server.
BINARY = Path("/usr/sbin/Orthanc")
#: What to install when there is no Orthanc.
INSTALL_HINT = "apt-get install orthanc orthanc-dicomweb"


class OrthancError(RuntimeError):
    """Orthanc could not be started or refused an upload; the message says why in one line."""


@dataclass(frozen=True)
class Orthanc:
    """A running Orthanc: its REST root and its DICOMweb root."""

    http: str

    @property
    def dicomweb(self) -> str:
        """The DICOMweb root (QIDO-RS, WADO-RS, STOW-RS)."""
        return f"{self.http}/dicom-web"

    def upload(self, path: Path, client: httpx.Client | None = None) -> None:
        """Store one DICOM file (POST /instances), through `client` when given."""
        post = client.post if client is not None else httpx.post
        response = post(f"{self.http}/instances", content=path.read_bytes(), timeout=60)
        if response.status_code != 200:
            raise OrthancError(f"{path}: Orthanc refused it: HTTP {response.status_code}")

    def upload_all(self, paths: Iterable[Path]) -> int:
        """Store every file of `paths` over one connection; how many were stored."""
        count = 0
        with httpx.Client(timeout=60) as client:
            for path in paths:
                self.upload(path, client)
                count += 1
        return count


def _plugin() -> Path | None:
    for folder in PLUGIN_DIRS:
        found = sorted(folder.glob("libOrthancDicomWeb.so*")) if folder.is_dir() else []
        if found:
            return found[0]
    return None


def orthanc_binary() -> tuple[Path, Path] | None:
    """The Orthanc server and its DICOMweb plugin, or None when either is not installed."""
    binary, plugin = Path(shutil.which("Orthanc") or BINARY), _plugin()
    if not binary.exists() or plugin is None:
        return None
    return binary, plugin


@contextlib.contextmanager
def orthanc_server(folder: Path, **settings: object) -> Iterator[Orthanc]:
    """Orthanc on loopback with DICOMweb, storing under `folder`, with any further `settings`
    of its configuration; stopped (by its PID) on leaving. Raises OrthancError when it is
    not installed or does not start."""
    found = orthanc_binary()
    if found is None:
        raise OrthancError(f"Orthanc with its DICOMweb plugin is not installed ({INSTALL_HINT})")
    binary, plugin = found
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = {
        "Name": "flip",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "index"),
        "HttpPort": port,
        "DicomPort": free_port(),
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": [str(plugin)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        **settings,
    }
    path = folder / "orthanc.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    log_path = folder / "orthanc.log"
    with log_path.open("w") as log:
        process = subprocess.Popen([binary, str(path)], stdout=log, stderr=subprocess.STDOUT)
        try:
            server = Orthanc(f"http://127.0.0.1:{port}")
            _wait_until_up(server, process, log_path)
            yield server
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_up(server: Orthanc, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.http}/system", timeout=1).status_code == 200:
                return
        if process.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no log"]
            raise OrthancError(f"Orthanc did not start: {tail[0]} (its log: {log})")
        time.sleep(0.2)
