#!/usr/bin/env python3
"""A demo robot: publishes sensor_msgs/BatteryState on /battery_state at 5 Hz, with the NaN
fields real battery drivers report."""
import math
import signal

import rclpy
from rclpy.qos import qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import BatteryState


def main() -> None:
    # Ctrl-C is handled here (KeyboardInterrupt, then a clean shutdown), not by rclpy: its
    # handler, hit again by the SIGINT scripts/demo sends on exit, printed
    # "rcl_trigger_guard_condition() failed: guard condition handle not from this implementation".
    # A background job of a script starts with SIGINT ignored: take it back, so the SIGINT
    # scripts/demo sends on exit stops the robot.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("demo_robot")
    pub = node.create_publisher(BatteryState, "/battery_state", qos_profile_sensor_data)
    i = 0

    def tick():
        nonlocal i
        m = BatteryState()
        m.header.stamp = node.get_clock().now().to_msg()
        m.header.frame_id = "base_link"
        m.voltage = 24.0 + math.sin(i / 10)
        m.percentage = max(0.0, 1.0 - i / 10000)
        m.current = -1.5
        m.temperature = float("nan")
        m.charge = float("nan")
        m.capacity = float("nan")
        m.power_supply_status = BatteryState.POWER_SUPPLY_STATUS_DISCHARGING
        m.present = True
        m.cell_voltage = [3.7, 3.71, 3.69]
        m.location = "demo-lab"
        m.serial_number = "DEMO-0001"
        pub.publish(m)
        i += 1

    node.create_timer(0.2, tick)
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
