"""What `flip demo dermatology` takes, checked before the journey's heavy imports."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class DermatologyDemoError(RuntimeError):
    """The demo could not go on; the message says why in one line."""


@dataclass(frozen=True)
class DermatologyOptions:
    """What `flip demo dermatology` takes."""

    sites: int = 4
    size: str = "small"
    out: Path = Path("demo-dermatology")
    seed: int = 0
    rounds: int = 20
    local_epochs: int = 1
    people: tuple[int, ...] | None = None  # people per site, over --size (tests use few)
    image_weights: Path | None = None  # pretrained photograph network each site registers

    def check(self) -> None:
        """Raise DermatologyDemoError on options no run can use."""
        if not 1 <= self.sites <= 12:
            raise DermatologyDemoError(f"--sites must be between 1 and 12, not {self.sites}")
        if self.size not in ("small", "default", "large"):
            raise DermatologyDemoError(f"--size must be small, default or large, not {self.size!r}")
        if self.people is not None and len(self.people) != self.sites:
            raise DermatologyDemoError("give one number of people per site")
        if not 1 <= self.rounds <= 200:
            raise DermatologyDemoError(f"--rounds must be between 1 and 200, not {self.rounds}")
        if self.image_weights is not None and not self.image_weights.is_file():
            raise DermatologyDemoError(
                f"--image-weights {self.image_weights}: not a file (a torch state dict)"
            )
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DermatologyDemoError(
                f"cannot write to --out {self.out}: {exc.strerror or exc}"
            ) from None
