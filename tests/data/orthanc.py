"""A real Orthanc server with its DICOMweb plugin for tests: `flip.data.sources.orthanc`'s,
skipped where Orthanc is not installed (a failure in CI, where `make test` installs it)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from flip.data.sources import orthanc as process
from flip.data.sources.orthanc import Orthanc
from tests.conftest import IN_CI

__all__ = ["Orthanc", "orthanc_server"]


@contextlib.contextmanager
def orthanc_server(folder: Path, **settings: object) -> Iterator[Orthanc]:
    """Orthanc on loopback with DICOMweb, and any further `settings` of its configuration;
    skips without it (fails in CI)."""
    if process.orthanc_binary() is None:
        message = f"Orthanc with its DICOMweb plugin is not installed ({process.INSTALL_HINT})"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    with process.orthanc_server(folder, **settings) as server:
        yield server
