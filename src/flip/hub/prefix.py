"""Where the hub serves its API: the server mounts its routes there and clients call there."""

API_PREFIX = "/api/v1"
