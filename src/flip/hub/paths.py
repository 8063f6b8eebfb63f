"""Where the hub serves its API: shared by the application and its clients."""

#: The prefix of every API route.
API_PREFIX = "/api/v1"
