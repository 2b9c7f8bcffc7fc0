"""The error envelope on every kind of failure, and request ids."""

from __future__ import annotations

import sqlite3

import httpx


def test_validation_error_uses_envelope(api: httpx.Client) -> None:
    response = api.get("/api/videos", params={"page": "first"})

    body = response.json()
    assert response.status_code == 400
    assert body["error"]["code"] == "INVALID_PARAMETER"
    assert body["error"]["field"] == "page"
    assert body["error"]["details"]["provided"] == "first"


def test_unknown_route_is_404_envelope(api: httpx.Client) -> None:
    response = api.get("/api/no-such-thing")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"


def test_wrong_method_is_405_envelope(api: httpx.Client) -> None:
    response = api.put("/api/videos")

    assert response.status_code == 405
    assert response.json()["error"]["code"] == "METHOD_NOT_ALLOWED"


def test_unknown_video_is_404_with_field(api: httpx.Client) -> None:
    response = api.get("/api/videos/video_doesnotexist")

    assert response.status_code == 404
    assert response.json()["error"] == {
        "code": "NOT_FOUND",
        "message": "Video 'video_doesnotexist' was not found.",
        "field": "id",
        "details": {"id": "video_doesnotexist"},
    }


def test_request_id_is_echoed_or_generated(api: httpx.Client) -> None:
    echoed = api.get("/api/videos", headers={"X-Request-ID": "client-chosen-id-1"})
    generated = api.get("/api/videos")

    assert echoed.headers["x-request-id"] == "client-chosen-id-1"
    assert len(generated.headers["x-request-id"]) == 32


def test_internal_error_hides_trace_and_logs_request_id(server_factory) -> None:  # type: ignore[no-untyped-def]
    broken = server_factory("sqlite")
    key = broken.create_key("*")
    with sqlite3.connect(broken.data_dir / "mp4e.db") as connection:
        connection.execute("ALTER TABLE videos RENAME TO videos_moved")

    with broken.client(key) as client:
        response = client.get("/api/videos")

    body = response.json()
    request_id = response.headers["x-request-id"]
    assert response.status_code == 500
    assert body["error"]["code"] == "INTERNAL_ERROR"
    assert body["error"]["details"] == {"requestId": request_id}
    assert "Traceback" not in response.text
    assert "videos" not in body["error"]["message"]
    assert request_id in (broken.log_dir / "serve.log").read_text()


def test_graphql_error_carries_code_field_details(api: httpx.Client) -> None:
    response = api.post("/graphql", json={"query": '{ video(id: "video_nope") { id } }'})

    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "NOT_FOUND"
    assert error["extensions"]["field"] == "id"
    assert error["extensions"]["details"] == {"id": "video_nope"}


def test_graphql_invalid_page_size_names_field(api: httpx.Client) -> None:
    response = api.post("/graphql", json={"query": "{ videos(pageSize: 500) { total } }"})

    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "INVALID_PARAMETER"
    assert error["extensions"]["field"] == "pageSize"
    assert error["extensions"]["details"]["max"] == 100


def test_health_endpoints(server) -> None:  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=server.base_url) as client:
        health = client.get("/healthz")
        ready = client.get("/readyz")

    assert health.json()["status"] == "ok"
    assert ready.json()["checks"] == {"database": "ok", "broker": "ok"}


def test_openapi_lists_documented_paths(server) -> None:  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=server.base_url) as client:
        paths = client.get("/openapi.json").json()["paths"]

    assert "/api/videos" in paths
    assert "/api/videos/upload" in paths
    assert "/api/videos/{video_id}" in paths


def test_graphiql_page_opens_without_key(server) -> None:  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=server.base_url) as client:
        response = client.get("/graphql", headers={"Accept": "text/html"})

    assert response.status_code == 200
    assert "graphiql" in response.text.lower()
