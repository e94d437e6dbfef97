# Environment for running peaqos_node and rclpy scripts in this shell:  . scripts/env.sh
#
# With a sourced ROS 2 (ROS_DISTRO set, e.g. in a ros:jazzy container) it only adds this
# package's colcon install. On a bare machine it uses the ROS 2 Jazzy wheels that
# scripts/setup installed into .venv.
_peaqos_root=$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)
if [ -z "${ROS_DISTRO:-}" ] || [ "${PEAQOS_VENV_ROS:-}" = 1 ]; then
  if [ -x "$_peaqos_root/.venv/bin/python" ]; then
    export PEAQOS_VENV_ROS=1
    export VIRTUAL_ENV="$_peaqos_root/.venv"
    case ":$PATH:" in *":$VIRTUAL_ENV/bin:"*) ;; *) export PATH="$VIRTUAL_ENV/bin:$PATH" ;; esac
    case ":${AMENT_PREFIX_PATH:-}:" in
      *":$VIRTUAL_ENV:"*) ;;
      *) export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" ;;
    esac
    export ROS_DISTRO=jazzy
    _peaqos_libs="$VIRTUAL_ENV/lib"
    for _d in "$VIRTUAL_ENV"/lib/python3.11/site-packages/ros_*.libs; do
      [ -d "$_d" ] && _peaqos_libs="$_peaqos_libs:$_d"
    done
    case ":${LD_LIBRARY_PATH:-}:" in
      *":$VIRTUAL_ENV/lib:"*) ;;
      *) export LD_LIBRARY_PATH="$_peaqos_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ;;
    esac
    unset _d _peaqos_libs
  else
    echo "peaqos_node: no ROS 2 sourced and no .venv: run scripts/setup first" >&2
  fi
fi
if [ -f "$_peaqos_root/install/peaqos_node/share/peaqos_node/local_setup.bash" ] && [ -n "${BASH_VERSION:-}" ]; then
  # ament's setup files read unset variables: source them without `set -u`.
  case $- in *u*) _peaqos_nounset=1; set +u ;; *) _peaqos_nounset= ;; esac
  # shellcheck disable=SC1091
  . "$_peaqos_root/install/peaqos_node/share/peaqos_node/local_setup.bash"
  [ -n "$_peaqos_nounset" ] && set -u
  unset _peaqos_nounset
fi
if [ -d "$_peaqos_root/install/peaqos_node" ]; then
  case ":${AMENT_PREFIX_PATH:-}:" in
    *":$_peaqos_root/install/peaqos_node:"*) ;;
    *) export AMENT_PREFIX_PATH="$_peaqos_root/install/peaqos_node:$AMENT_PREFIX_PATH" ;;
  esac
  case ":$PATH:" in
    *":$_peaqos_root/install/peaqos_node/lib/peaqos_node:"*) ;;
    *) export PATH="$_peaqos_root/install/peaqos_node/lib/peaqos_node:$PATH" ;;
  esac
  _py="$_peaqos_root/install/peaqos_node/lib/python3.11/site-packages"
  if [ -d "$_py" ]; then
    case ":${PYTHONPATH:-}:" in *":$_py:"*) ;; *) export PYTHONPATH="$_py${PYTHONPATH:+:$PYTHONPATH}" ;; esac
  fi
  unset _py
fi
export PEAQOS_ROOT="$_peaqos_root"
unset _peaqos_root
