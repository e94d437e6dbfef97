"""Launch the peaqOS Edge Agent.

    ros2 launch peaqos_node peaqos_node.launch.py policy_file:=/path/map.yaml data_dir:=/var/lib/peaqos

The machine key is read from PEAQOS_PRIVATE_KEY in the launching environment or from the
`key_file` parameter (set it in params_file); it is never a launch argument.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    share = get_package_share_directory("peaqos_node")
    args = [
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "peaqos_node.yaml"),
                              description="ROS parameters file of the node"),
        DeclareLaunchArgument("policy_file", default_value="",
                              description="Data Event Map YAML (empty: the embedded demo policy)"),
        DeclareLaunchArgument("data_dir", default_value="",
                              description="Directory for all durable state (empty: ~/.ros/peaqos_node)"),
        DeclareLaunchArgument("namespace", default_value="", description="Namespace of the node"),
        DeclareLaunchArgument("log_level", default_value="info", description="debug, info, warn, error"),
    ]
    return LaunchDescription(args + [OpaqueFunction(function=_node)])


def _node(context):
    get = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    parameters = [get("params_file")]
    # Launch arguments override the params file only when given.
    overrides = {k: get(k) for k in ("policy_file", "data_dir") if get(k)}
    if overrides:
        parameters.append(overrides)
    return [Node(
        package="peaqos_node",
        executable="peaqos_node",
        name="peaqos_node",
        namespace=get("namespace"),
        parameters=parameters,
        arguments=["--ros-args", "--log-level", get("log_level")],
        output="screen",
        emulate_tty=True,
    )]
