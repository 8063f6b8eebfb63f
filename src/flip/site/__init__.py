"""The site agent: polls the hub outbound-only, enforces local policy, answers and joins."""
