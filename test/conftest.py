"""pytest fixtures: an isolated ROS 2 domain per test session and an rclpy node."""
from __future__ import annotations

import os
import random
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

# Keep discovery on this machine and away from other test runs.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(10, 99)))


@pytest.fixture(scope="session")
def rclpy_ctx():
    rclpy = pytest.importorskip("rclpy")
    rclpy.init()
    yield rclpy
    rclpy.shutdown()


@pytest.fixture
def ros_node(rclpy_ctx):
    node = rclpy_ctx.create_node(f"peaqos_test_{uuid.uuid4().hex[:8]}")
    yield node
    node.destroy_node()
