"""A real Orthanc server with its DICOMweb plugin (Debian's packages), on free loopback ports."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from flip.ports import free_port
from tests.conftest import IN_CI

#: Where Debian's orthanc-dicomweb package puts its plugin.
PLUGIN_DIRS = (Path("/usr/share/orthanc/plugins"), Path("/usr/lib/orthanc"))


@dataclass
class Orthanc:
    """A running Orthanc: its REST root and its DICOMweb root."""

    http: str

    @property
    def dicomweb(self) -> str:
        return f"{self.http}/dicom-web"

    def upload(self, path: Path) -> None:
        """Store one DICOM file (POST /instances)."""
        httpx.post(
            f"{self.http}/instances", content=path.read_bytes(), timeout=30
        ).raise_for_status()


def _plugin() -> Path | None:
    for folder in PLUGIN_DIRS:
        found = sorted(folder.glob("libOrthancDicomWeb.so*")) if folder.is_dir() else []
        if found:
            return found[0]
    return None


@contextlib.contextmanager
def orthanc_server(folder: Path, **settings: object) -> Iterator[Orthanc]:
    """Orthanc on loopback with DICOMweb, and any further `settings` of its configuration;
    skips without it (fails in CI, where `make test` installs it)."""
    binary, plugin = shutil.which("Orthanc") or "/usr/sbin/Orthanc", _plugin()
    if not Path(binary).exists() or plugin is None:
        message = (
            "Orthanc with its DICOMweb plugin is not installed "
            "(apt-get install orthanc orthanc-dicomweb)"
        )
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = {
        "Name": "flip-test",
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
    log = (folder / "orthanc.log").open("w")
    process = subprocess.Popen([binary, str(path)], stdout=log, stderr=subprocess.STDOUT)
    server = Orthanc(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{server.http}/system", timeout=1).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"Orthanc did not start: {(folder / 'orthanc.log').read_text()[-2000:]}"
                )
            time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
