"""examples/deploy/kubernetes.yaml: the server and workers as Kubernetes runs them,
and the KEDA query that scales the workers, checked against a real `controller
server` started with the file's command line and environment."""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterator

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from controller.server import check_bind
from mlq import MLQ
from tests.deploy_files import (
    DOC,
    K8S_SECRET,
    Server,
    container,
    envvars,
    k8s_environment,
    k8s_object,
    parse,
)


@pytest.fixture(scope="module")
def deploy_namespace() -> str:
    return f"d_{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def k8s_server(redis_url: str, deploy_namespace: str,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The server exactly as kubernetes.yaml runs it, on the suite's Redis, in a fresh
    namespace (the file's own would be shared with other tests)."""
    spec = container("mlq-server")
    env = {**k8s_environment(spec, redis_url), "MLQ_NAMESPACE": deploy_namespace}
    server = Server(spec["command"], env, tmp_path_factory.mktemp("k8s") / "server.log")
    yield server
    server.stop()
    MLQ(deploy_namespace, redis_url=redis_url).clear_all()


Families = dict[str, list[tuple[dict[str, str], float]]]


def metrics(server: Server, host: str = "localhost") -> Families:
    """GET /metrics as Prometheus does: {family: [(labels, value), ...]}."""
    response = requests.get(server.url + "/metrics", timeout=10, headers={
        "Host": host, "Authorization": f"Bearer {K8S_SECRET['token']}"})
    assert response.status_code == 200, response.text
    return {family.name: [(s.labels, s.value) for s in family.samples]
            for family in text_string_to_metric_families(response.text)}


_SELECTOR = re.compile(r"(\w+)\{([^}]*)\}")
_TERM = re.compile(r"^\s*(max|sum)\(\s*(\w+\{[^}]*\})\s*\)\s*$")


def selectors(query: str) -> list[tuple[str, dict[str, str]]]:
    return [(name, dict(re.findall(r'(\w+)\s*=\s*"([^"]*)"', labels)))
            for name, labels in _SELECTOR.findall(query)]


def evaluate(query: str, families: Families, relabel: dict[str, str]) -> float:
    """The PromQL forms the example uses (`max(m{l="v"})`, `sum(...)`, joined by `+`)
    over one scrape; anything else fails, so a new query needs a look here."""
    total = 0.0
    for term in query.split("+"):
        match = _TERM.match(term)
        assert match, f"query form not understood: {term!r}"
        ((name, wanted),) = selectors(match.group(2))
        wanted = {k: relabel.get(v, v) for k, v in wanted.items()}
        values = [v for labels, v in families.get(name, [])
                  if all(labels.get(k) == v for k, v in wanted.items())]
        assert values, f"{name}{wanted} is not among the scraped samples"
        total += max(values) if match.group(1) == "max" else sum(values)
    return total


def test_kubernetes_commands_and_variables_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    for deployment in ("mlq-server", "mlq-worker"):
        spec = container(deployment)
        env = k8s_environment(spec, "redis://mlq-redis:6379/0")
        command, params = parse(spec["command"], env, monkeypatch)
        unread = set(env) - envvars(command)
        assert not unread, f"{deployment}: {command.name} does not read {unread}"
        if command.name == "server":
            check_bind(params["server_address"], params["token"], params["insecure"])
    _, worker = parse(container("mlq-worker")["command"], {}, monkeypatch)
    pod = k8s_object("Deployment", "mlq-worker")["spec"]["template"]["spec"]
    # running jobs are put back before the kubelet's SIGKILL
    assert worker["grace_period"] < pod["terminationGracePeriodSeconds"]


def test_kubernetes_probe_service_and_scaler_point_at_what_the_file_defines(
        monkeypatch: pytest.MonkeyPatch) -> None:
    server = container("mlq-server")
    _, params = parse(server["command"], {"MLQ_TOKEN": K8S_SECRET["token"]}, monkeypatch)
    ports = {p["name"]: p["containerPort"] for p in server["ports"]}
    probe = server["readinessProbe"]["httpGet"]
    assert probe["path"] == "/healthz" and ports[probe["port"]] == params["server_port"]
    assert "livenessProbe" not in server  # a restart would not bring Redis back
    service = k8s_object("Service", "mlq-server")
    assert service["spec"]["selector"] == k8s_object(
        "Deployment", "mlq-server")["spec"]["template"]["metadata"]["labels"]
    assert all(p["targetPort"] in ports for p in service["spec"]["ports"])
    scaled = k8s_object("ScaledObject", "mlq-worker")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "mlq-worker"
    # see the file: the gauge counts waiting jobs only
    assert scaled["spec"]["minReplicaCount"] >= 1
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    _, worker = parse(container("mlq-worker")["command"], {}, monkeypatch)
    worker_env = k8s_environment(container("mlq-worker"), "")
    # the query counts the queue and namespace these workers consume
    for name, labels in selectors(trigger["metadata"]["query"]):
        assert labels["namespace"] == worker_env["MLQ_NAMESPACE"], name
        if "queue" in labels:
            assert [labels["queue"]] == worker["queues"].split(","), name


def test_kubernetes_server_answers_its_probe_and_prometheus(k8s_server: Server) -> None:
    probe = container("mlq-server")["readinessProbe"]["httpGet"]
    headers = {h["name"]: h["value"] for h in probe.get("httpHeaders", [])}
    ready = requests.get(k8s_server.url + probe["path"], headers=headers, timeout=10)
    assert ready.status_code == 200
    # without that header the kubelet sends the pod's address, which the server refuses
    assert requests.get(k8s_server.url + "/healthz", headers={"Host": "10.1.2.3:5000"},
                        timeout=10).status_code == 403
    # Prometheus as DEPLOY.md configures it: the target's name in Host, the token
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S)
    scrape = next(yaml.safe_load(block) for block in blocks if "scrape_configs" in block)
    (job,) = scrape["scrape_configs"]
    (target,) = job["static_configs"][0]["targets"]
    assert "mlq_jobs_waiting" in metrics(k8s_server, host=target)


def test_keda_query_counts_every_waiting_job_of_the_queue(
        k8s_server: Server, redis_url: str, deploy_namespace: str) -> None:
    """Jobs at several priorities and of several owners, posted through the library
    and the server's POST /jobs, with no worker: the scaler's query reads them all."""
    (trigger,) = k8s_object("ScaledObject", "mlq-worker")["spec"]["triggers"]
    query = trigger["metadata"]["query"]
    ((_, labels),) = selectors(query)
    queue = labels["queue"]
    q = MLQ(deploy_namespace, redis_url=redis_url)
    posted = 0
    for priority in (0, 3, 9):
        for owner in (None, "alice", "bob"):
            q.post({"n": posted}, queue=queue, priority=priority, owner=owner)
            posted += 1
    q.post_many([{"n": i} for i in range(5)], queue=queue, owner="carol")
    posted += 5
    for body in ({"priority": 5}, {"owner": "dave"}, {"priority": 2, "owner": "dave"}, {}):
        response = requests.post(k8s_server.url + "/jobs",
                                 json={"msg": "x", "queue": queue, **body},
                                 headers={"Authorization": f"Bearer {K8S_SECRET['token']}"},
                                 timeout=10)
        assert response.status_code == 200, response.text
        posted += 1
    q.post("elsewhere", queue="other_queue", owner="alice")  # another queue: not counted
    value = evaluate(query, metrics(k8s_server), {labels["namespace"]: deploy_namespace})
    assert value == posted
    # what KEDA then asks for, with the file's threshold
    assert math.ceil(value / float(trigger["metadata"]["threshold"])) >= 2


def test_waiting_gauge_counts_every_priority_and_owner_of_each_queue(
        k8s_server: Server, redis_url: str, deploy_namespace: str) -> None:
    """Each priority level and each owner's jobs are a Redis list of their own: the
    gauge of each queue is the sum over all of them."""
    q = MLQ(deploy_namespace, redis_url=redis_url)
    expected = {"gauge_a": 0, "gauge_b": 0}
    for i in range(12):
        queue = "gauge_a" if i % 3 else "gauge_b"
        q.post(i, queue=queue, priority=i % 10 if i % 4 else 0,
               owner=None if i % 5 == 0 else f"owner{i % 3}")
        expected[queue] += 1
    waiting = {labels["queue"]: value for labels, value in metrics(k8s_server)["mlq_jobs_waiting"]
               if labels["namespace"] == deploy_namespace}
    assert {k: waiting.get(k) for k in expected} == expected


