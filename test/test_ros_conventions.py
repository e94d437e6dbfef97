"""The node behaves like a ROS 2 node to `ros2 param` and `--log-level`: its parameters stay
declared for its whole life with descriptions, types and ranges; read-only ones refuse `set`
with a reason; `diagnostics_period` and `log_level` take effect when set; the ROS log level
(`--log-level`, the `log_level` parameter) decides which of the node's own lines are shown.
Everything goes through rclpy's parameter services, as `ros2 param` does."""
from __future__ import annotations

import time

import pytest

from peaqos_harness import NodeProcess, call_service, sleep_scaled, wait_until

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import DescribeParameters, GetParameters, ListParameters, SetParameters

from peaqos_node.srv import GetStatus

NODE = "/peaqos_node"
EXPECTED = {
    "policy_file", "data_dir", "key_file", "diagnostics_period", "batch_max", "log_level",
    "chain.enabled", "chain.generation", "chain.network", "chain.rpc_urls", "chain.machine_id",
    "chain.receipt_timeout", "chain.contracts.event_registry", "events.batch_max", "stream.queue_max_bytes",
    "market.enabled", "market.url", "market.api_key_file", "market.onboard_at_start", "market.heartbeat.lease_ttl",
}


def _client(ros_node, srv_type, name):
    return ros_node.create_client(srv_type, f"{NODE}/{name}")


def _set(ros_node, node, name: str, value: ParameterValue):
    req = SetParameters.Request(parameters=[Parameter(name=name, value=value)])
    return call_service(ros_node, _client(ros_node, SetParameters, "set_parameters"), req, proc=node).results[0]


def _get(ros_node, node, *names: str):
    req = GetParameters.Request(names=list(names))
    return call_service(ros_node, _client(ros_node, GetParameters, "get_parameters"), req, proc=node).values


@pytest.fixture
def node(tmp_path):
    n = NodeProcess(tmp_path, {"data_dir": str(tmp_path / "data"), "chain.enabled": "false"},
                    env={"RUST_LOG": ""}, log_level=None).start()
    n.wait_for_log("subscribed to")
    yield n
    assert n.stop() == 0, n.output()


def test_parameters_stay_declared_described_and_typed(ros_node, node, tmp_path):
    sleep_scaled(2.0)  # well after start: handles dropped at start would have undeclared them by now
    listed = call_service(ros_node, _client(ros_node, ListParameters, "list_parameters"),
                          ListParameters.Request(), proc=node).result.names
    assert EXPECTED <= set(listed), f"missing: {EXPECTED - set(listed)}"

    data_dir, batch_max = _get(ros_node, node, "data_dir", "batch_max")
    assert data_dir.type == ParameterType.PARAMETER_STRING and data_dir.string_value == str(tmp_path / "data")
    assert batch_max.type == ParameterType.PARAMETER_INTEGER and batch_max.integer_value == 256

    req = DescribeParameters.Request(names=["batch_max", "diagnostics_period", "data_dir", "log_level"])
    d = {x.name: x for x in call_service(ros_node, _client(ros_node, DescribeParameters, "describe_parameters"),
                                         req, proc=node).descriptors}
    assert d["batch_max"].type == ParameterType.PARAMETER_INTEGER and d["batch_max"].read_only
    assert (d["batch_max"].integer_range[0].from_value, d["batch_max"].integer_range[0].to_value) == (1, 65536)
    assert d["diagnostics_period"].type == ParameterType.PARAMETER_DOUBLE and not d["diagnostics_period"].read_only
    assert d["diagnostics_period"].floating_point_range[0].from_value == pytest.approx(0.05)
    assert d["data_dir"].read_only and "durable state" in d["data_dir"].description
    assert d["log_level"].type == ParameterType.PARAMETER_STRING and not d["log_level"].read_only
    assert all(x.description for x in d.values())


def test_read_only_refuse_set_and_settable_ones_take_effect(ros_node, node):
    r = _set(ros_node, node, "batch_max", ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=5))
    assert not r.successful and "read only" in r.reason.lower(), r
    r = _set(ros_node, node, "diagnostics_period",
             ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=0.001))
    assert not r.successful and r.reason, r
    r = _set(ros_node, node, "log_level", ParameterValue(type=ParameterType.PARAMETER_STRING, string_value="loud"))
    assert not r.successful and "debug, info" in r.reason, r

    # diagnostics_period: about 1 report a second by default, about 5 once set to 0.2.
    stamps: list[float] = []
    sub = ros_node.create_subscription(DiagnosticArray, "/diagnostics", lambda _m: stamps.append(time.monotonic()), 10)

    def rate(seconds: float) -> float:
        stamps.clear()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            rclpy.spin_once(ros_node, timeout_sec=0.05)
        return len(stamps) / seconds

    assert rate(3.0) <= 2.0
    r = _set(ros_node, node, "diagnostics_period", ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=0.2))
    assert r.successful, r.reason
    assert rate(3.0) >= 3.0
    assert _get(ros_node, node, "diagnostics_period")[0].double_value == pytest.approx(0.2)
    ros_node.destroy_subscription(sub)


def _status(ros_node, node):
    call_service(ros_node, ros_node.create_client(GetStatus, f"{NODE}/status"), GetStatus.Request(), proc=None)
    sleep_scaled(0.5)  # the request's debug line, if any, is in the log by now


def _logged(node, text: str) -> None:
    wait_until(lambda: text in node.output(), 5, f"the node to log {text!r}", nodes=node)


def test_log_level_parameter_controls_the_nodes_own_debug_lines(ros_node, node):
    assert _get(ros_node, node, "log_level")[0].string_value == "info"
    _status(ros_node, node)
    assert "request ~/status" not in node.output()
    r = _set(ros_node, node, "log_level", ParameterValue(type=ParameterType.PARAMETER_STRING, string_value="debug"))
    assert r.successful, r.reason
    _status(ros_node, node)
    _logged(node, "request ~/status")


def test_ros_log_level_argument_reaches_the_nodes_own_lines(ros_node, tmp_path):
    """`--ros-args --log-level peaqos_node:=debug` alone (no RUST_LOG) shows the node's debug
    lines; `warn` hides its info lines."""
    for level, shows_debug, shows_info in (("debug", True, True), ("warn", False, False)):
        n = NodeProcess(tmp_path / level, {"data_dir": str(tmp_path / level / "data"), "chain.enabled": "false"},
                        env={"RUST_LOG": ""}, name=level, log_level=level)
        (tmp_path / level).mkdir()
        n.start()
        try:
            assert _get(ros_node, n, "log_level")[0].string_value == level
            _status(ros_node, n)
            if shows_debug:
                _logged(n, "request ~/status")
            out = n.output()
            assert ("request ~/status" in out) == shows_debug, out[-3000:]
            assert ("subscribed to" in out) == shows_info, out[-3000:]
        finally:
            assert n.stop() == 0, n.output()
