"""Metrics render live samples as Prometheus text and Consul JSON."""

from __future__ import annotations

from agent.metrics import AgentMetrics, Sample, consul_json_name


def test_prometheus_and_json_from_live_samples() -> None:
    value = {"n": 1}

    def samples() -> list[Sample]:
        return [
            Sample("consul_client_rpc", "counter", "RPCs", value["n"]),
            Sample("consul_router_servers", "gauge", "servers", 3, {"datacenter": "dc1"}),
        ]

    metrics = AgentMetrics(samples)
    text = metrics.prometheus().decode()
    assert "consul_client_rpc_total 1.0" in text
    assert 'consul_router_servers{datacenter="dc1"} 3.0' in text
    value["n"] = 5  # read at each scrape
    assert "consul_client_rpc_total 5.0" in metrics.prometheus().decode()
    data = metrics.consul_json()
    assert {"Name": "consul.client.rpc", "Count": 5, "Sum": 5.0, "Labels": {}} in data["Counters"]
    assert {"Name": "consul.router.servers", "Value": 3.0, "Labels": {"datacenter": "dc1"}} in data[
        "Gauges"
    ]


async def test_runtime_gauges_count_tasks_memory_and_fds() -> None:
    from agent.metrics import runtime_samples

    values = {s.name: s.value for s in runtime_samples()}
    assert values["consul_runtime_num_goroutines"] >= 1  # this test's own task
    assert values["consul_runtime_sys_bytes"] > 1_000_000
    assert values["consul_runtime_open_fds"] >= 3
    data = AgentMetrics(runtime_samples).consul_json()
    names = {g["Name"] for g in data["Gauges"]}
    assert {"consul.runtime.num_goroutines", "consul.runtime.sys_bytes"} <= names


def test_json_names_are_spelled_as_consul_spells_them() -> None:
    # Regression: the runtime gauges came out as consul.runtime.num.goroutines.
    assert consul_json_name("consul_runtime_num_goroutines") == "consul.runtime.num_goroutines"
    assert consul_json_name("consul_runtime_sys_bytes") == "consul.runtime.sys_bytes"
    assert consul_json_name("consul_client_rpc_total") == "consul.client.rpc"
    assert consul_json_name("consul_client_rpc_failed_total") == "consul.client.rpc.failed"
