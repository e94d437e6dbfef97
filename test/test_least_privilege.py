"""Least privilege on the ROS graph: the production parameters file switches off every service
that spends, writes identity or grants data, and such a service is not even advertised (the
graph API, as `ros2 service list` uses it, does not list it); the SROS2 policy in config/sros2
names every privileged service, gives it to the operator enclave only, and its node profile
answers exactly the services the node has. (The Fast DDS in the registry wheels is built
without DDS-Security, so enforcement itself cannot run here; see README.)"""
from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from peaqos_harness import ROOT, NodeProcess, wait_until

import rclpy

POLICY = """\
schema_version: 1
topics:
  - topic: /lp/battery
    type: sensor_msgs/msg/BatteryState
    qos: reliable
    stream:
      chunk: {max_messages: 2, max_age: 1}
"""


def access_lists() -> tuple[list[str], list[str]]:
    """PRIVILEGED and UNPRIVILEGED as src/node/src/access.rs defines them (the one source)."""
    src = (ROOT / "src/node/src/access.rs").read_text()
    def names(const: str) -> list[str]:
        body = re.search(rf"pub const {const}: &\[&str\] =\s*&\[(.*?)\];", src, re.S).group(1)
        return re.findall(r'"([a-z_]+)"', body)
    return names("PRIVILEGED"), names("UNPRIVILEGED")


def privileged_actions() -> list[str]:
    src = (ROOT / "src/node/src/access.rs").read_text()
    body = re.search(r"pub const PRIVILEGED_ACTIONS: &\[&str\] =\s*&\[(.*?)\];", src, re.S).group(1)
    return re.findall(r'"([a-z_]+)"', body)


def advertised(ros_node, timeout: float = 20.0) -> set[str]:
    """The node's services as the graph shows them, once they have stopped appearing."""
    seen: set[str] = set()

    def settled() -> bool:
        rclpy.spin_once(ros_node, timeout_sec=0.1)
        now = {n for n, _ in ros_node.get_service_names_and_types() if n.startswith("/peaqos_node/")}
        if "/peaqos_node/status" in now and now == seen:
            return True
        seen.clear()
        seen.update(now)
        time.sleep(0.5)
        return False
    wait_until(settled, timeout, "the node's services to appear in the graph")
    return {n.removeprefix("/peaqos_node/") for n in seen}


def start(tmp: Path, production: bool) -> NodeProcess:
    (tmp / "policy.yaml").write_text(POLICY)
    files = [ROOT / "config/peaqos_node.production.yaml"] if production else []
    return NodeProcess(tmp, {"policy_file": str(tmp / "policy.yaml"), "data_dir": str(tmp / "data"),
                             "chain.rpc_urls": "['http://127.0.0.1:9']"}, params_files=files).start()


@pytest.mark.parametrize("production", [False, True], ids=["defaults", "production"])
def test_privileged_services_are_off_and_unadvertised_in_production(ros_node, tmp_path, production):
    privileged, unprivileged = access_lists()
    node = start(tmp_path, production)
    try:
        node.wait_for_log("subscribed to /lp/battery")
        names = advertised(ros_node)
        assert {"status", *unprivileged} <= names, names
        # an action is advertised through its hidden services (<name>/_action/send_goal, ...)
        actions = {a for a in privileged_actions() if f"{a}/_action/send_goal" in names}
        if production:
            assert not names & set(privileged), f"advertised in production: {names & set(privileged)}"
            assert not actions, f"actions advertised in production: {actions}"
            assert "services switched off (not advertised)" in node.output()
        else:
            # ~/market_onboard exists only with market.enabled (test_market_e2e.py)
            assert set(privileged) - {"market_onboard"} <= names, set(privileged) - names
            assert actions == set(privileged_actions()), actions
    finally:
        assert node.stop() == 0, node.output()


def test_an_unknown_service_name_is_a_start_error(tmp_path):
    from peaqos_harness import run_node_expecting_failure
    code, out = run_node_expecting_failure(tmp_path, {"data_dir": str(tmp_path / "d"),
                                                      "services.disabled": "['activate', 'actvate']"})
    assert code != 0 and "services.disabled" in out and "actvate" in out, out


def test_sros2_policy_gives_privileged_services_to_the_operator_only():
    privileged, unprivileged = access_lists()
    root = ET.parse(ROOT / "config/sros2/policy.xml").getroot()
    assert root.tag == "policy" and root.get("version") == "0.2.0"
    enclaves = {e.get("path"): e for e in root.iter("enclave")}
    assert set(enclaves) == {"/peaqos/peaqos_node", "/peaqos/operator", "/peaqos/robot_apps"}

    def services(enclave: str, attr: str) -> set[str]:
        out: set[str] = set()
        for s in enclaves[enclave].iter("services"):
            assert set(s.attrib) <= {"reply", "request"} and all(v == "ALLOW" for v in s.attrib.values())
            if attr in s.attrib:
                out |= {e.text.strip() for e in s.iter("service")}
        return out

    node_replies = {n.removeprefix("~") for n in services("/peaqos/peaqos_node", "reply")}
    assert {"status", *privileged, *unprivileged} <= node_replies
    operator = {n.removeprefix("/peaqos_node/") for n in services("/peaqos/operator", "request")}
    assert set(privileged) <= operator
    apps = {n.removeprefix("/peaqos_node/") for n in services("/peaqos/robot_apps", "request")}
    assert not apps & set(privileged), apps & set(privileged)
    assert apps <= {"status", *unprivileged}
    def actions(enclave: str, attr: str) -> set[str]:
        return {e.text.strip() for a in enclaves[enclave].iter("actions") if attr in a.attrib for e in a.iter("action")}

    assert {f"~{a}" for a in privileged_actions()} <= actions("/peaqos/peaqos_node", "execute")
    assert {f"/peaqos_node/{a}" for a in privileged_actions()} <= actions("/peaqos/operator", "call")
    assert not list(enclaves["/peaqos/robot_apps"].iter("actions"))
    for profile in root.iter("profile"):
        assert profile.get("ns") == "/" and profile.get("node")
