#!/usr/bin/env python3
"""Print the signed data packages peaqos_node publishes on /peaqos_node/data_packages."""
import json

import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy

from peaqos_node.msg import DataPackage


def main() -> None:
    rclpy.init()
    node = rclpy.create_node("watch_packages")

    def show(msg: DataPackage) -> None:
        pkg = json.loads(msg.package_json)
        payload = json.dumps(pkg["payload"], ensure_ascii=False)
        if len(payload) > 160:
            payload = payload[:157] + "..."
        print(f"{msg.topic} #{msg.sequence_number} {pkg['timestamp']} signed by {pkg['did']}\n    {payload}", flush=True)

    node.create_subscription(DataPackage, "/peaqos_node/data_packages", show,
                             QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass


if __name__ == "__main__":
    main()
