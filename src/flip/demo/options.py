"""What `flip demo` takes, checked before the journey's heavy imports."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class DemoError(RuntimeError):
    """The demo could not go on; the message says why in one line."""


@dataclass(frozen=True)
class DemoOptions:
    """What `flip demo` takes."""

    sites: int = 3
    rounds: int = 10
    out: Path = Path("demo-out")
    seed: int = 0
    cpus: int | None = None
    poll_interval: float = 0.1

    def check(self) -> None:
        """Raise DemoError on options no run can use."""
        if not 1 <= self.sites <= 20:
            raise DemoError(f"--sites must be between 1 and 20, not {self.sites}")
        if not 1 <= self.rounds <= 500:
            raise DemoError(f"--rounds must be between 1 and 500, not {self.rounds}")
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            probe = self.out / ".write-test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise DemoError(f"cannot write to --out {self.out}: {exc.strerror or exc}") from None
