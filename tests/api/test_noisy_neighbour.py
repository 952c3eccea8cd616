"""One workspace's heavy requests do not stall another's: listings of a box full of
hard links (which cost no inodes) and JSON bodies of millions of values, through a real
server."""

from __future__ import annotations

import concurrent.futures
import time

import httpx
import pytest

pytestmark = pytest.mark.sandbox

LINKS = 150_000
LISTINGS = 12
# Generous: a quiet request takes milliseconds; without the bounds it waits for seconds.
MAX_STALL_S = 1.5


@pytest.fixture(scope="module")
def two_workspaces(start_server):
    server = start_server(env={"EXECBOX_API_KEYS": "noisy:kn,quiet:kq"}, args=("--disk-limit", "512MiB"))
    noisy = httpx.Client(base_url=server.url, headers={"x-api-key": "kn", "anthropic-version": "2023-06-01"}, timeout=300)
    quiet = httpx.Client(base_url=server.url, headers={"x-api-key": "kq", "anthropic-version": "2023-06-01"}, timeout=300)
    yield noisy, quiet
    noisy.close()
    quiet.close()


def _worst_latency_during(quiet: httpx.Client, path: str, busy: concurrent.futures.Future) -> tuple[float, int]:
    worst, count = 0.0, 0
    while not busy.done():
        started = time.monotonic()
        response = quiet.get(path)
        assert response.status_code == 200, response.text
        worst = max(worst, time.monotonic() - started)
        count += 1
        time.sleep(0.05)
    return worst, count


def test_listings_of_a_huge_box_do_not_stall_another_workspace(two_workspaces) -> None:
    noisy, quiet = two_workspaces
    box = noisy.post("/v1/containers").json()["id"]
    made = noisy.post(f"/v1/containers/{box}/exec", json={"code": (
        "import os\nos.mkdir('l')\n"  # ext4 allows 65,000 links per file
        f"for i in range({LINKS}):\n"
        "    if i % 60_000 == 0:\n        source = f'l/f{i}'\n        open(source, 'w').close()\n"
        "    os.link(source, f'l/{i:07}')\n")})
    assert made.json()["return_code"] == 0, made.text
    mine = quiet.post("/v1/containers").json()["id"]

    def listing() -> int:
        response = noisy.get(f"/v1/containers/{box}/files")
        assert response.status_code == 200
        return len(response.json()["data"])

    with concurrent.futures.ThreadPoolExecutor(LISTINGS) as pool:
        listings = [pool.submit(listing) for _ in range(LISTINGS)]
        busy = pool.submit(concurrent.futures.wait, listings)
        worst, probes = _worst_latency_during(quiet, f"/v1/containers/{mine}", busy)
    assert all(0 < f.result() <= 10_000 for f in listings)
    assert probes >= 3
    assert worst < MAX_STALL_S, f"another workspace waited {worst:.2f} s"


def test_bodies_of_millions_of_values_do_not_stall_the_server(two_workspaces) -> None:
    noisy, quiet = two_workspaces
    box = noisy.post("/v1/containers").json()["id"]
    body = '{"code": "print(1)", "pad": [' + ",".join(["0"] * 14_000_000) + "]}"  # 28 MB

    def post() -> httpx.Response:
        return noisy.post(f"/v1/containers/{box}/exec", content=body, headers={"content-type": "application/json"})

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        posts = [pool.submit(post)]
        busy = pool.submit(concurrent.futures.wait, posts)
        worst, probes = _worst_latency_during(quiet, "/v1/models", busy)
    assert probes >= 1
    assert worst < MAX_STALL_S, f"/v1/models waited {worst:.2f} s"
    for response in (f.result() for f in posts):
        assert response.status_code == 400
        assert "JSON values" in response.json()["error"]["message"]
