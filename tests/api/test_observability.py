"""/metrics after real executions, JSON log lines, /docs and the OpenAPI schema."""

from __future__ import annotations

import json
import re

import anthropic
import httpx
import pytest

EXEC_ROUTE = "/v1/containers/{container_id}/exec"


def samples(text: str) -> dict[str, float]:
    """``name{labels}`` -> value, from Prometheus' text format (labels sorted by name)."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
        assert match, line
        name, labels, value = match.groups()
        pairs = sorted(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', labels or ""))
        key = name + ("{" + ",".join(f"{k}={v}" for k, v in pairs) + "}" if pairs else "")
        found[key] = float(value)
    return found


@pytest.fixture(scope="module")
def observed(start_server):
    """A server of its own (its counters start at zero) that logs JSON."""
    return start_server(env={"EXECBOX_LOG_FORMAT": "json"})


def test_metrics_count_what_ran(observed) -> None:
    with httpx.Client(base_url=observed.url, timeout=120) as http:
        containers = [http.post("/v1/containers").json()["id"] for _ in range(3)]
        runs = [
            {"code": "print(1)"}, {"code": "print(2)"}, {"code": "raise SystemExit(3)"},
            {"command": "echo hi"}, {"code": "import time; time.sleep(10)", "timeout": 1},
        ]
        for body in runs:
            assert http.post(f"/v1/containers/{containers[0]}/exec", json=body).status_code == 200
        assert http.post("/v1/containers/container_nope/exec", json={"code": "1"}).status_code == 404
        assert http.delete(f"/v1/containers/{containers[2]}").status_code == 200

        sdk = anthropic.Anthropic(base_url=observed.url, api_key="x", max_retries=0)
        sdk.messages.create(
            model="execbox-direct", max_tokens=512,
            messages=[{"role": "user", "content": "```python\nprint('from the model')\n```"}],
            tools=[{"type": "code_execution_20250522", "name": "code_execution"}],
        )
        scraped = http.get("/metrics")
    assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
    m = samples(scraped.text)

    def total(name: str, **labels: str) -> float:
        """The sum over the series of ``name`` with these labels (any execution path)."""
        want = [f"{k}={v}" for k, v in labels.items()]
        return sum(
            value for key, value in m.items()
            if key.startswith(name + "{") and set(want) <= set(key[len(name) + 1:-1].split(","))
        )

    def executions(tool: str, outcome: str) -> float:
        return total("execbox_executions_total", tool=tool, outcome=outcome)

    # Four Python runs through the containers API plus one through the model; one bash.
    assert executions("python", "ok") == 3
    assert executions("python", "error") == 1
    assert executions("python", "timeout") == 1
    assert executions("bash", "ok") == 1
    assert total("execbox_execution_duration_seconds_count", tool="python") == 5
    assert total("execbox_execution_duration_seconds_count", tool="bash") == 1
    assert total("execbox_execution_duration_seconds_sum", tool="python") >= 1.0  # the timeout alone
    assert total("execbox_executions_total", path="unknown") == 0
    assert m["execbox_kernels_live"] == 0

    assert m[f"execbox_http_requests_total{{method=POST,route={EXEC_ROUTE},status=200}}"] == 5
    assert m[f"execbox_http_requests_total{{method=POST,route={EXEC_ROUTE},status=404}}"] == 1
    assert m["execbox_http_requests_total{method=POST,route=/v1/containers,status=200}"] == 3
    assert m[f"execbox_http_request_duration_seconds_count{{method=POST,route={EXEC_ROUTE}}}"] == 6
    assert m["execbox_http_requests_total{method=POST,route=/v1/messages,status=200}"] == 1

    # Three containers made here, one deleted, one more made for the Messages request.
    assert m["execbox_containers_live"] == 3
    assert m["execbox_model_requests_total{backend=direct,model=execbox-direct,outcome=ok}"] == 2
    assert m["execbox_model_request_duration_seconds_count{backend=direct,model=execbox-direct}"] == 2
    assert m["execbox_messages_total{model=execbox-direct,stop_reason=end_turn}"] == 1
    assert m["execbox_executions_in_progress"] == 0 and m["execbox_executions_waiting"] == 0


def test_json_logs_carry_the_request_context(observed) -> None:
    with httpx.Client(base_url=observed.url, timeout=120) as http:
        container = http.post("/v1/containers").json()["id"]
        ran = http.post(f"/v1/containers/{container}/exec", json={"code": "print(1)"})
        request_id = ran.headers["request-id"]
        sdk = anthropic.Anthropic(base_url=observed.url, api_key="x", max_retries=0)
        response = sdk.messages.with_raw_response.create(
            model="execbox-direct", max_tokens=512,
            messages=[{"role": "user", "content": "```bash\necho hi\n```"}],
            tools=[{"type": "code_execution_20250825", "name": "code_execution"}],
        )
        message_request = response.headers["request-id"]
        message_container = response.parse().container.id
        http.get("/health")  # the access line of the request above is written when it ends
    lines = [json.loads(line) for line in observed.log_path.read_text().splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)

    exec_lines = [line for line in lines if line.get("request_id") == request_id]
    execution = next(line for line in exec_lines if line["logger"] == "execbox.containers")
    assert execution["container_id"] == container and execution["workspace"] == "default"
    assert execution["tool"] == "python" and execution["outcome"] == "ok" and execution["duration_ms"] > 0
    access = next(line for line in exec_lines if line["logger"] == "execbox.access")
    assert access["status"] == 200 and access["route"] == EXEC_ROUTE and access["duration_ms"] > 0

    message_lines = [line for line in lines if line.get("request_id") == message_request]
    model_call = next(line for line in message_lines if line["message"].startswith("model call"))
    assert model_call["model"] == "execbox-direct" and model_call["container_id"] == message_container
    assert model_call["backend"] == "direct" and model_call["duration_ms"] >= 0
    assert any(line["logger"] == "execbox.containers" and line["tool"] == "bash" for line in message_lines)


def test_docs_and_openapi_describe_the_api(server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        docs = http.get("/docs")
        assert docs.status_code == 200 and "/static/docs/swagger-ui-bundle.js" in docs.text
        assert "cdn" not in docs.text.lower().replace("swagger_favicon", "")
        bundle = http.get("/static/docs/swagger-ui-bundle.js")
        assert bundle.status_code == 200 and len(bundle.content) > 100_000
        schema = http.get("/openapi.json").json()
    components = schema["components"]["schemas"]

    def body_schema(path: str, method: str, kind: str = "application/json") -> dict:
        return schema["paths"][path][method]["requestBody"]["content"][kind]["schema"]

    ref = body_schema("/v1/messages", "post")["$ref"].rsplit("/", 1)[1]
    assert ref == "MessageCreateParams" and {"model", "messages", "max_tokens", "tools"} <= set(components[ref]["properties"])
    exec_ref = body_schema(EXEC_ROUTE, "post")["$ref"].rsplit("/", 1)[1]
    assert {"code", "command", "timeout"} <= set(components[exec_ref]["properties"])
    assert "file" in body_schema("/v1/files", "post", "multipart/form-data")["properties"]
    assert body_schema("/v1/containers/{container_id}/files/{path}", "put", "application/octet-stream")
    responses = schema["paths"]["/v1/messages"]["post"]["responses"]
    assert responses["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/Message")
    assert "text/event-stream" in responses["200"]["content"] and "422" not in responses
    assert responses["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
    listing = schema["paths"]["/v1/containers"]["get"]
    assert {p["name"] for p in listing["parameters"]} == {"limit", "after_id", "before_id"}
    # Every $ref resolves.
    for target in re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(schema)):
        assert target in components, target


def test_made_up_model_ids_grow_no_series(server) -> None:
    """Callers choose the model id: unknown ids must not become metric labels (they are
    answered 404 before any model call; a served id that ``/v1/models`` does not list would be
    labelled ``other``)."""
    sdk = anthropic.Anthropic(base_url=server.url, api_key="x", max_retries=0)
    for n in range(3):
        with pytest.raises(anthropic.NotFoundError):
            sdk.messages.create(model=f"made-up-{n}", max_tokens=64, messages=[{"role": "user", "content": "hi"}])
    sdk.messages.create(model="execbox-direct", max_tokens=1024, messages=[{"role": "user", "content": "hi"}])
    text = httpx.get(f"{server.url}/metrics").text
    assert "made-up" not in text
    assert 'execbox_messages_total{model="execbox-direct"' in text
