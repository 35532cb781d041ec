"""Ray's state API over HTTP (what ``ray list tasks --detail`` and the dashboard read), with the
bearer token of a tests/support/ray_head.py head."""

from __future__ import annotations

import requests

LIMIT = 10_000


def state(head, resource: str, **filters: str) -> list[dict]:
    """Every row of ``resource`` (tasks, actors, jobs, placement_groups...) with detail."""
    params = {"limit": LIMIT, "detail": "1"}
    if filters:
        params.update({"filter_keys": list(filters), "filter_predicates": ["="] * len(filters),
                       "filter_values": list(filters.values())})
    r = requests.get(f"{head.address}/api/v0/{resource}", params=params, timeout=60,
                     headers={"Authorization": f"Bearer {head.token_file.read_text().strip()}"})
    r.raise_for_status()
    return r.json()["data"]["result"]["result"]


def job_details(head) -> list[dict]:
    """The Jobs API's view of every job: entrypoint, metadata, runtime_env."""
    r = requests.get(f"{head.address}/api/jobs/", timeout=60,
                     headers={"Authorization": f"Bearer {head.token_file.read_text().strip()}"})
    r.raise_for_status()
    return r.json()
