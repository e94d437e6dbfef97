"""scripts/gen_rust_bindings.py turns colcon-cargo-ros2's generator output into the layout
rclrs 0.8's ros-env crate includes. (That the result compiles and runs is shown by every other
test: the node is built from it.)"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from peaqos_harness import ROOT

@pytest.fixture(scope="module")
def out(tmp_path_factory):
    assert shutil.which("colcon-cargo-ros2") or (ROOT / ".venv" / "bin" / "colcon-cargo-ros2").exists(), \
        "colcon-cargo-ros2 not installed: scripts/setup installs it (pip install colcon-cargo-ros2)"
    out = tmp_path_factory.mktemp("bindings")
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_rust_bindings.py"), "--output", str(out),
                    "--package-path", f"peaqos_node={ROOT}", "rcl_interfaces", "diagnostic_msgs", "peaqos_node"],
                   check=True, capture_output=True, text=True)
    return out / "share"


def test_every_dependency_is_generated_with_the_ros_env_marker(out):
    # diagnostic_msgs -> std_msgs -> builtin_interfaces; rcl_interfaces -> builtin_interfaces, ...
    for pkg in ("rcl_interfaces", "diagnostic_msgs", "std_msgs", "builtin_interfaces", "peaqos_node"):
        toml = (out / pkg / "rust" / "Cargo.toml").read_text()
        assert f'name = "{pkg}"' in toml
        assert "[package.metadata.ros-env]\ninclude = true" in toml
    assert 'std_msgs = "*"' in (out / "diagnostic_msgs" / "rust" / "Cargo.toml").read_text()


def test_layout_and_paths_are_rewritten_for_ros_env(out):
    src = out / "std_msgs" / "rust" / "src"
    assert (src / "msg.rs").exists() and (src / "msg" / "rmw.rs").exists()
    for f in src.rglob("*.rs"):
        text = f.read_text()
        assert "crate::msg::" not in text and "crate::rosidl_runtime_rs" not in text, f
        for inc in re.findall(r'include!\("([^"]+)"\)', text):
            assert inc.startswith("/") and Path(inc).exists(), inc
    header_rmw = (src / "msg" / "header_rmw.rs").read_text()
    assert "crate::builtin_interfaces::msg::rmw::Time" in header_rmw


def test_rclrs_names_service_types_and_constants_its_way(out):
    rmw = (out / "rcl_interfaces" / "rust" / "src" / "srv" / "rmw.rs").read_text()
    assert "pub type GetParameters_Request = GetParametersRequest;" in rmw
    ptype = (out / "rcl_interfaces" / "rust" / "src" / "msg" / "parameter_type_rmw.rs").read_text()
    assert re.search(r"impl ParameterType \{\n(    pub const [A-Z_]+: u8 = \d+;\n)+\}", ptype)
    assert "PartialOrd" in (out / "builtin_interfaces" / "rust" / "src" / "msg" / "time_idiomatic.rs").read_text()


def test_own_interfaces_are_named_after_the_package(out):
    rmw = (out / "peaqos_node" / "rust" / "src" / "msg" / "data_package_rmw.rs").read_text()
    assert '"peaqos_node/msg/DataPackage"' in rmw
    assert "peaqos_node__rosidl_typesupport_c" in rmw


def test_actions_get_their_implicit_types_and_rclrs_names(out):
    # action/MarketOrder.action: goal, result and feedback, the SendGoal and GetResult services,
    # the feedback message and the Action impl that builds and splits them, in both layers.
    src = out / "peaqos_node" / "rust" / "src"
    rmw = (src / "action" / "rmw.rs").read_text()
    for name in ("MarketOrder_SendGoal", "MarketOrder_SendGoal_Request", "MarketOrder_SendGoal_Response",
                 "MarketOrder_GetResult", "MarketOrder_GetResult_Request", "MarketOrder_GetResult_Response"):
        assert f"pub use market_order::{name};" in rmw, name
    for part in ("Goal", "Result", "Feedback", "FeedbackMessage"):
        assert f"pub type MarketOrder_{part} = MarketOrder{part};" in rmw, part
    idiomatic = (src / "action.rs").read_text()
    for part in ("Goal", "Result", "Feedback"):
        assert f"pub type MarketOrder_{part} = MarketOrder{part};" in idiomatic, part
    impl = (src / "action" / "market_order_rmw.rs").read_text()
    assert "impl rosidl_runtime_rs::Action for MarketOrder {" in impl
    for fn in ("create_goal_request", "split_goal_request", "create_goal_response", "get_goal_response_accepted",
               "get_goal_response_stamp", "create_feedback_message", "split_feedback_message",
               "create_result_request", "get_result_request_uuid", "create_result_response",
               "split_result_response"):
        assert f"fn {fn}(" in impl, fn
    # Goal ids, stamps and the cancel service come from the dependencies, through ros-env.
    assert "crate::unique_identifier_msgs::msg::rmw::UUID" in impl
    assert "crate::builtin_interfaces::msg::rmw::Time" in impl
    assert "type CancelGoalService = crate::action_msgs::srv::rmw::CancelGoal;" in impl
    assert '"peaqos_node/action/MarketOrder_FeedbackMessage"' in impl
    assert "rosidl_typesupport_c__get_action_type_support_handle__peaqos_node__action__MarketOrder" in impl
    toml = (out / "peaqos_node" / "rust" / "Cargo.toml").read_text()
    for dep in ("action_msgs", "unique_identifier_msgs", "builtin_interfaces"):
        assert f'{dep} = "*"' in toml, dep
        assert "[package.metadata.ros-env]\ninclude = true" in (out / dep / "rust" / "Cargo.toml").read_text()
    for f in src.rglob("*.rs"):
        text = f.read_text()
        assert "crate::action::" not in text and "crate::rosidl_runtime_rs" not in text, f
