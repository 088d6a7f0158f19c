"""The fault suite of issue 4: eight scenarios that break syncd on purpose (crashes, provider
storms, webhook chaos, echo races, restarts, replicas, poison input, SIGTERM) against the
platform simulators, through the real engine and HTTP API, and count what was lost,
duplicated or left wrong compared with the simulators' own truth.

``python -m bench.faults [--quick] [--scenario N] [--seed S]`` prints the table;
``tests/reliability`` runs every scenario small in CI. Each scenario module exposes
``async def run(size: int, seed: int = 0) -> Row``.
"""
