"""``GET /v1/containers``: the workspace's live containers, newest first, paged by cursor."""

from __future__ import annotations

import time

import httpx
import pytest


@pytest.fixture(scope="module")
def keyed(start_server):
    """A server of its own with two workspaces, so the listing holds only this module's containers."""
    return start_server(env={"EXECBOX_API_KEYS": "alpha:key-a,beta:key-b"})


def client(server, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"x-api-key": key}, timeout=60)


def test_pages_newest_first_and_stays_in_the_workspace(keyed) -> None:
    with client(keyed, "key-a") as alpha, client(keyed, "key-b") as beta:
        created = [alpha.post("/v1/containers").json()["id"] for _ in range(5)]
        other = beta.post("/v1/containers").json()["id"]
        newest_first = list(reversed(created))

        first = alpha.get("/v1/containers", params={"limit": 2}).json()
        assert [c["id"] for c in first["data"]] == newest_first[:2]
        assert first["has_more"] is True and first["first_id"] == newest_first[0] and first["last_id"] == newest_first[1]
        item = first["data"][0]
        assert item["type"] == "container" and item["expires_at"] > item["created_at"]
        assert item["last_used_at"] >= item["created_at"]
        assert item["disk_used_bytes"] is None or item["disk_used_bytes"] > 0
        assert item["kernel_live"] is False  # no session cell ran in it

        second = alpha.get("/v1/containers", params={"limit": 2, "after_id": first["last_id"]}).json()
        third = alpha.get("/v1/containers", params={"limit": 2, "after_id": second["last_id"]}).json()
        assert [c["id"] for c in second["data"]] == newest_first[2:4] and second["has_more"] is True
        assert [c["id"] for c in third["data"]] == newest_first[4:] and third["has_more"] is False

        back = alpha.get("/v1/containers", params={"limit": 2, "before_id": third["first_id"]}).json()
        assert [c["id"] for c in back["data"]] == newest_first[2:4] and back["has_more"] is True

        everything = alpha.get("/v1/containers", params={"limit": 100}).json()
        assert [c["id"] for c in everything["data"]] == newest_first and everything["has_more"] is False
        assert [c["id"] for c in beta.get("/v1/containers").json()["data"]] == [other]

        # Another workspace's id is no cursor here; a deleted container leaves the listing.
        refused = alpha.get("/v1/containers", params={"after_id": other})
        assert refused.status_code == 400 and refused.json()["error"]["type"] == "invalid_request_error"
        assert alpha.delete(f"/v1/containers/{created[0]}").status_code == 200
        remaining = alpha.get("/v1/containers", params={"limit": 100}).json()
        assert [c["id"] for c in remaining["data"]] == newest_first[:-1]


def test_disk_use_grows_with_files(keyed) -> None:
    with client(keyed, "key-a") as alpha:
        container = alpha.post("/v1/containers").json()["id"]

        def used() -> int | None:
            page = alpha.get("/v1/containers", params={"limit": 100}).json()
            return next(c["disk_used_bytes"] for c in page["data"] if c["id"] == container)

        before = used()
        if before is None:
            pytest.skip("this server runs without loop disks (insecure mode): no per-container disk use")
        wrote = alpha.post(
            f"/v1/containers/{container}/exec",
            json={"command": "head -c 8000000 /dev/urandom > blob.bin && sync"},
        )
        assert wrote.json()["return_code"] == 0
        assert used() >= before + 7_000_000


@pytest.mark.parametrize(
    "params", [{"limit": 0}, {"limit": 1001}, {"after_id": "container_nope"}, {"after_id": "a", "before_id": "b"}]
)
def test_bad_parameters_are_400(keyed, params) -> None:
    with client(keyed, "key-a") as alpha:
        response = alpha.get("/v1/containers", params=params)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_expired_containers_leave_the_listing_before_the_reaper_runs(start_server) -> None:
    server = start_server(args=("--container-ttl", "1", "--reaper-interval", "3600"))
    with httpx.Client(base_url=server.url, timeout=60) as http:
        container = http.post("/v1/containers").json()["id"]
        assert [c["id"] for c in http.get("/v1/containers").json()["data"]] == [container]
        time.sleep(1.5)
        assert http.get("/v1/containers").json()["data"] == []
        # Still a cursor for a client that was paging when it expired.
        assert http.get("/v1/containers", params={"after_id": container}).status_code == 200
    server.stop()
