"""The hub's access policy: how long tokens live and how fast passwords may be guessed."""

from __future__ import annotations

from fastapi import HTTPException, status
from pydantic import BaseModel, Field

from flip.hub.passwords import Profile

#: The longest cap on API token lifetimes a hub may be started with (ten years).
LONGEST_TOKEN_DAYS = 3650


class AccessPolicy(BaseModel):
    """Limits an admin sets when starting the hub (`flip hub serve --max-token-days …`)."""

    max_token_days: int = Field(
        90, ge=1, le=LONGEST_TOKEN_DAYS, description="The longest an API token lives."
    )
    max_tokens_per_user: int = Field(
        20, ge=1, description="Live API tokens one user may hold at once."
    )
    account_failures: int = Field(
        5, ge=1, description="Wrong passwords for one account within the window before 429."
    )
    address_failures: int = Field(
        20, ge=1, description="Wrong passwords from one client address within the window."
    )
    failure_window: float = Field(
        900.0, gt=0, description="Seconds a wrong password counts against its account and address."
    )
    password_workers: int = Field(
        2, ge=1, description="Password hashes (argon2id) computed at once; the rest wait."
    )
    password_queue: int = Field(
        32, ge=0, description="Password checks that may wait for a worker; beyond that, 429."
    )
    account_requests: int = Field(
        5, ge=1, description="Account requests (the public form) from one client address per hour."
    )
    password_profile: Profile = Field(
        "rfc9106-low-memory",
        description="argon2id parameters for new hashes; 'test-cheapest' is for test hubs only.",
    )

    def token_days(self, asked: int | None) -> int:
        """The lifetime of a new API token: what was asked, or the cap; more than the cap is 422."""
        if asked is None:
            return self.max_token_days
        if asked > self.max_token_days:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                f"expires_in_days: {asked} is over this hub's limit of "
                f"{self.max_token_days} days for an API token",
            )
        return asked
