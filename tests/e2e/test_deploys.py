"""Deploys and traffic through the real edge: weights, blue/green under load, a canary, a deploy
that never gets healthy, auto_spawn, and a name that is a service or a tenant, never both."""

from __future__ import annotations

import http.client
import json
import subprocess
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from slum.client import control_socket_path
from tests.conftest import free_port
from tests.e2e.conftest import Slum, slum_argv, write_config

CONFIG = """
[settings]
data_dir = "./data"
health_check_interval = 0.5
max_restarts = 1
backoff_base_ms = 100
backoff_max_ms = 200
stop_grace_s = 2

[service.web]
command = ["{python}", "{children}/web.py"]
health = "/health"
startup_timeout = 3

[service.web.env]
HEALTH_FAIL_FILE = "{{data_dir}}/{{name}}/{{id}}/unhealthy"

[service.auto]
command = ["{python}", "{children}/web.py"]
health = "/health"
auto_spawn = true
max_instances = 2

[instances]
web = ["v1"]
"""


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Slum]:
    write_config(tmp_path, CONFIG)
    s = Slum(tmp_path, free_port())
    s.start()
    try:
        yield s
    finally:
        s.stop()


class Client:
    """One keep-alive connection through the edge, as a browser or a load tool holds one."""

    def __init__(self, node: Slum, host: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=30)
        self.host = host

    def get(self, path: str = "/") -> tuple[int, str]:
        self.conn.request("GET", path, headers={"Host": self.host})
        resp = self.conn.getresponse()
        return resp.status, resp.read().decode()

    def close(self) -> None:
        self.conn.close()


def serving(body: str) -> str:
    return body.split(" ")[0]  # web.py answers "SERVICE:ID PATH"


def test_canary_at_10_90_over_1000_requests(node: Slum) -> None:
    node.cli("deploy", "web", "--version", "v2", "--weight", "10", check=True)
    node.cli("weight", "web:v1", "90", check=True)
    client = Client(node, "web.localhost")
    counts: Counter[str] = Counter()
    for _ in range(1000):
        status, body = client.get()
        assert status == 200, body
        counts[serving(body)] += 1
    client.close()
    assert set(counts) == {"web:v1", "web:v2"}
    # Binomial(1000, 0.1): sd ~9.5, so 100 +- 40 fails once in ~50,000 runs.
    assert 60 <= counts["web:v2"] <= 140, counts


def test_weight_zero_takes_no_traffic(node: Slum) -> None:
    node.cli("deploy", "web", "--version", "v2", check=True)
    node.cli("weight", "web:v1", "0", check=True)
    client = Client(node, "web.localhost")
    seen = {serving(client.get()[1]) for _ in range(50)}
    client.close()
    assert seen == {"web:v2"}
    # The instance's own host still reaches it whatever its weight.
    status, _, body = node.http("GET", "/", host="v1.web.localhost")
    assert (status, body) == (200, b"web:v1 /")


def test_blue_green_under_continuous_load_loses_nothing(node: Slum) -> None:
    stop = threading.Event()
    results: list[tuple[int, str]] = []
    errors: list[BaseException] = []

    def load() -> None:
        client = Client(node, "web.localhost")
        try:
            for _ in range(20_000):  # bounded: the test stops it long before
                if stop.is_set():
                    break
                results.append(client.get())
        except BaseException as e:  # any failure is the test's business
            errors.append(e)
        finally:
            client.close()

    thread = threading.Thread(target=load)
    thread.start()
    try:
        deployed = node.cli("deploy", "web", "--version", "v2", "--weight", "0", check=True)
        assert "weight 0" in deployed.stdout
        switched = node.cli("route", "web", "--from", "v1", "--to", "v2", check=True)
        assert "web:v1 weight 0 -> web:v2 weight 100" in switched.stdout
        mark = len(results)
        while len(results) < mark + 200 and thread.is_alive():
            threading.Event().wait(0.05)
    finally:
        stop.set()
        thread.join(60)
    assert not errors
    assert len(results) > 200
    assert all(status == 200 for status, _ in results), Counter(s for s, _ in results)
    order = [serving(body) for _, body in results]
    assert order[0] == "web:v1" and order[-1] == "web:v2"
    # After the switch, v1 gets nothing more: one change over, not a flapping mix.
    last_v1 = max(i for i, who in enumerate(order) if who == "web:v1")
    assert set(order[last_v1 + 1 :]) == {"web:v2"}
    # The old version keeps running until it idles out or is stopped.
    old = node.cli_json("ps")
    assert {i["id"]: (i["status"], i["weight"]) for i in old}["web:v1"] == ("healthy", 0)


def test_a_deploy_that_never_gets_healthy_leaves_the_old_version_serving(node: Slum) -> None:
    bad = node.dir / "data" / "web" / "bad"
    bad.mkdir(parents=True)
    (bad / "unhealthy").write_text("")
    result = node.cli("deploy", "web", "--version", "bad", "--timeout", "8")
    assert result.returncode == 1
    assert "deploy of web:bad failed" in result.stderr
    assert "the running versions keep their traffic" in result.stderr
    instances = {i["id"]: i for i in node.cli_json("ps")}
    assert instances["web:v1"]["weight"] == 100 and instances["web:v1"]["status"] == "healthy"
    assert instances["web:bad"]["status"] in ("stopped", "failed")
    client = Client(node, "web.localhost")
    assert {serving(client.get()[1]) for _ in range(30)} == {"web:v1"}
    client.close()


def poster(node: Slum) -> Callable[[str, object], tuple[int, dict[str, object]]]:
    token = node.cli("token-gen", "--database", str(node.database), check=True).stdout.strip()

    def post(path: str, data: object) -> tuple[int, dict[str, object]]:
        status, _, body = node.http(
            "POST",
            path,
            body=json.dumps(data).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        )
        return status, json.loads(body)

    return post


def test_deploy_route_weight_in_the_api(node: Slum) -> None:
    post = poster(node)
    # slum's path, then tenement's paths and field names.
    status, deployed = post("/_/api/deploys", {"service": "web", "version": "v3", "weight": 0})
    assert status == 201 and deployed["id"] == "web:v3" and deployed["weight"] == 0
    status, routed = post("/api/route", {"process": "web", "from": "v1", "to": "v3"})
    assert status == 200
    assert (routed["from_weight"], routed["to_weight"]) == (0, 100)
    status, weighed = post("/api/instances/web:v1/weight", {"weight": 30})
    assert status == 200 and weighed["weight"] == 30
    status, refused = post("/api/instances/web:v1/weight", {"weight": 101})
    assert status == 400 and "0 to 100" in str(refused["error"])
    status, refused = post("/_/api/services/web/route", {"from": "v1", "to": "nope"})
    assert status == 404


def test_auto_spawn_starts_a_new_id_within_max_instances(node: Slum) -> None:
    for name in ("a", "b"):
        status, _, body = node.http("GET", "/x", host=f"{name}.auto.localhost")
        assert (status, body) == (200, f"auto:{name} /x".encode())
    status, _, body = node.http("GET", "/x", host="c.auto.localhost")
    assert status == 503 and b"max_instances = 2" in body
    # Without the option: the 404 says how to turn it on.
    status, _, body = node.http("GET", "/", host="nobody.web.localhost")
    assert status == 404 and b"auto_spawn = true" in body and b"[service.web]" in body


def test_a_name_is_a_service_or_a_tenant_never_both(node: Slum) -> None:
    result = node.cli("tenant-add", "web", "--database", str(node.database))
    assert result.returncode == 1 and "'web' is a service" in result.stderr
    status, body = poster(node)("/api/tenants", {"id": "web"})
    assert status == 409 and "is a service in the config" in str(body["error"])
    # A tenant of that name already in the registry stops the config from loading.
    node.stop()
    elsewhere = node.dir.parent / f"{node.dir.name}-elsewhere"  # no tenement.toml up from here
    elsewhere.mkdir()
    subprocess.run(
        [*slum_argv(), "tenant-add", "auto", "--database", str(node.database)],
        cwd=elsewhere,
        check=True,
        capture_output=True,
        env=node.env(),
    )
    registry = node.cli("tenant-list", "--json", "--database", str(node.database), check=True)
    assert "auto" in registry.stdout
    node.start(wait=False)
    assert node.proc is not None and node.proc.wait(30) == 2
    assert "[service.auto] has the name of a tenant" in node.log.read_text()
    assert not control_socket_path(node.database).exists()  # not left for the next start


def test_weights_outlive_a_restart_of_slum(node: Slum) -> None:
    node.cli("deploy", "web", "--version", "v2", "--weight", "25", check=True)
    node.cli("weight", "web:v1", "75", check=True)
    node.stop()
    node.start()
    weights = {i["id"]: i["weight"] for i in node.cli_json("ps")}
    assert weights == {"web:v1": 75, "web:v2": 25}
