"""Shared helpers for the end-to-end tests: start the real node, talk to it with rclpy,
check packages with the real peaq SDK.

Waiting: every wait of a test goes through :func:`wait_until` (or :func:`poll_until`). Its
timeout is the figure for an idle machine; the deadline is that times :func:`time_scale`, which
grows with the machine's load (CI machines are shared: a test must not fail because the machine
is slow), while polls stay cheap (50 ms). A wait that times out fails naming what it waited for,
with the log tail of every node process it was given."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Hardhat/anvil account #0: a public test key, never a real machine's.
DEMO_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
DEMO_ADDRESS = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
DEMO_DID = f"did:peaq:{DEMO_ADDRESS}"

# Most a deadline is stretched by the load average alone (PEAQOS_TEST_TIME_SCALE may go beyond).
MAX_LOAD_SCALE = 8.0
LOG_TAIL_CHARS = 8000


def time_scale() -> float:
    """How many times longer than on an idle machine a wait may take: $PEAQOS_TEST_TIME_SCALE
    when set, else the 1-minute load average per core (at least 1, at most MAX_LOAD_SCALE).
    Read at each use, so a machine that gets busier during a wait extends it."""
    env = os.environ.get("PEAQOS_TEST_TIME_SCALE", "").strip()
    if env:
        return max(float(env), 0.1)
    try:
        load = os.getloadavg()[0] / (os.cpu_count() or 1)
    except OSError:
        return 1.0
    return min(max(load, 1.0), MAX_LOAD_SCALE)


def scaled(seconds: float) -> float:
    """`seconds` on an idle machine, stretched by :func:`time_scale` (for timeouts given to rclpy
    or subprocess calls)."""
    return seconds * time_scale()


def sleep_scaled(seconds: float) -> None:
    """Let the system settle for `seconds` (scaled): for checks that something did *not*
    happen, e.g. that nothing is sent twice."""
    time.sleep(scaled(seconds))


def poll_until(pred, timeout: float, *, spin=None, poll: float = 0.05) -> bool:
    """Poll `pred` until it is true (→ True) or the scaled deadline passes (→ False). `spin`: an
    rclpy node spun once per poll (its callbacks run) instead of sleeping. The deadline is
    re-read from the load when reached, so a machine that got busier meanwhile extends it."""
    start = time.monotonic()
    while True:
        if pred():
            return True
        if time.monotonic() - start >= timeout * time_scale():
            return bool(pred())
        if spin is not None:
            import rclpy

            rclpy.spin_once(spin, timeout_sec=poll)
        else:
            time.sleep(poll)


def wait_until(pred, timeout: float, what, *, nodes=(), spin=None, poll: float = 0.05) -> None:
    """:func:`poll_until`, failing on timeout with what was awaited (a string, or a function
    returning one, evaluated only then) and the log tail of each node process in `nodes` (a
    :class:`NodeProcess` or several)."""
    if poll_until(pred, timeout, spin=spin, poll=poll):
        return
    what = what() if callable(what) else what
    raise AssertionError(f"timed out waiting for {what} ({timeout} s × {time_scale():.1f}){log_tails(nodes)}")


def log_tails(nodes) -> str:
    """The log tail of each node process, for a failure message."""
    if isinstance(nodes, NodeProcess):
        nodes = (nodes,)
    return "".join(f"\n--- {n.log_path.name} (tail) ---\n{n.tail()}" for n in nodes if n is not None)


def free_port() -> int:
    """A TCP port nothing listens on right now (for a server a test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_executable() -> str:
    if os.environ.get("PEAQOS_NODE_EXE"):  # set by `colcon test` (CMakeLists.txt)
        return os.environ["PEAQOS_NODE_EXE"]
    exe = shutil.which("peaqos_node")
    if exe:
        return exe
    exe = ROOT / "install" / "peaqos_node" / "lib" / "peaqos_node" / "peaqos_node"
    if not exe.exists():
        raise RuntimeError("peaqos_node is not built: run scripts/setup (or colcon build)")
    return str(exe)


class NodeProcess:
    """The peaqos_node executable started the way the launch file starts it."""

    def __init__(self, tmp: Path, params: dict[str, str], env: dict[str, str] | None = None, name: str = "node",
                 node_name: str | None = None, log_level: str | None = "debug", params_files: list[Path] = ()):
        self.tmp = Path(tmp)
        self.params_files = list(params_files)
        self.log_level = log_level
        self.params = params
        self.node_name = node_name
        self.env = dict(os.environ)
        self.env.setdefault("PEAQOS_PRIVATE_KEY", DEMO_KEY)
        self.env["RUST_BACKTRACE"] = "1"
        # One debug line per service request (and nothing else at debug): lets call_service tell
        # a request the middleware lost from a slow answer.
        self.env.setdefault("RUST_LOG", "info,peaqos_edge::requests=debug")
        if env:
            self.env.update(env)
        self.log_path = self.tmp / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def argv(self) -> list[str]:
        args = [node_executable(), "--ros-args"]
        if self.node_name:
            args += ["-r", f"__node:={self.node_name}"]
        if self.log_level:
            args += ["--log-level", f"{self.node_name or 'peaqos_node'}:={self.log_level}"]
        for f in self.params_files:
            args += ["--params-file", str(f)]
        for k, v in self.params.items():
            args += ["-p", f"{k}:={v}"]
        return args

    def start(self) -> "NodeProcess":
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv(), stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
        return self

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        return self.output()[-chars:]

    def requests_seen(self, service: str) -> int:
        """How many requests to `service` (`~/activate`, ...) reached the node."""
        return len(re.findall(rf"request {re.escape(service)}$", self.output(), re.M))

    def wait_for_log(self, text: str, timeout: float = 20.0) -> None:
        def logged() -> bool:
            if text in self.output():
                return True
            if self.proc and self.proc.poll() is not None:
                raise AssertionError(f"node exited ({self.proc.returncode}) before logging {text!r}:\n{self.tail()}")
            return False

        wait_until(logged, timeout, f"the node to log {text!r}", nodes=self)

    def stop(self, timeout: float = 20.0) -> int:
        assert self.proc
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(scaled(timeout))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode

    def kill9(self) -> None:
        assert self.proc
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.log.close()


def call_service(ros_node, cli, req, *, timeout: float = 60.0, proc: NodeProcess | None = None,
                 resend_after: float = 3.0):
    """Call a service of the node from an rclpy node and return the response.

    `wait_for_service` only sees discovery: a request sent before the client's writer has matched
    the server's reader is dropped by the middleware, and its call never answers. With `proc`
    given, a request the node has not seen after `resend_after` seconds is sent again (safe: it
    never reached the node); one the node has seen is waited for until `timeout`. Both are
    scaled with the machine's load (:func:`time_scale`). A timeout fails with the node's log, so
    the reason is in the test report."""
    assert cli.wait_for_service(timeout_sec=scaled(20)), f"service {cli.srv_name} not available{log_tails(proc)}"
    service = "~/" + cli.srv_name.rsplit("/", 1)[-1]
    seen = proc.requests_seen(service) if proc else 0
    state = {"fut": cli.call_async(req), "sent": time.monotonic()}

    def answered() -> bool:
        if state["fut"].done():
            return True
        if (proc is not None and time.monotonic() - state["sent"] > scaled(resend_after)
                and proc.requests_seen(service) == seen):
            cli.remove_pending_request(state["fut"])
            state.update(fut=cli.call_async(req), sent=time.monotonic())
        return False

    wait_until(answered, timeout, f"{cli.srv_name} to answer", nodes=proc or (), spin=ros_node)
    return state["fut"].result()


def run_node_expecting_failure(tmp: Path, params: dict[str, str], env: dict[str, str] | None = None,
                               timeout: float = 20.0) -> tuple[int, str]:
    """Run the node until it exits by itself; return (exit code, output)."""
    n = NodeProcess(tmp, params, env, name="failing")
    proc = subprocess.run(n.argv(), env=n.env, capture_output=True, text=True, timeout=scaled(timeout))
    return proc.returncode, proc.stdout + proc.stderr


def sdk_verify(package_json: str):
    """The SDK's verdict on one package."""
    from peaq_os_sdk.stream.types.data_package import DataPackage
    from peaq_os_sdk.stream.verification import verify_data_package

    p = json.loads(package_json)
    pkg = DataPackage(
        did=p["did"],
        timestamp=p["timestamp"],
        schema_version=p["schemaVersion"],
        sequence_number=p["sequenceNumber"],
        payload=p["payload"],
        signature=p["signature"],
        signing_key_id=p["signingKeyId"],
    )
    return verify_data_package(pkg)


def stream_bin() -> str:
    """The peaqos-stream tool of this package ($PEAQOS_STREAM_BIN, else the colcon install)."""
    env_bin = os.environ.get("PEAQOS_STREAM_BIN")
    if env_bin and Path(env_bin).exists():
        return env_bin
    return str(ROOT / "install" / "peaqos_node" / "lib" / "peaqos_node" / "peaqos-stream")


def is_ref_line(line: str) -> bool:
    """A package log line of a streamed topic written once: a reference into its chunk."""
    return line.startswith('{"payloadRef":')


def package_log(data_dir: Path, topic: str, key: str = DEMO_KEY) -> list[str]:
    """A topic's package log as the node's readers see it, oldest first: every line a signed
    package, streamed packages (held in the log as references to their chunk) read back from
    the chain by `peaqos-stream log` with the machine key."""
    out = subprocess.run([stream_bin(), "log", "--data-dir", str(data_dir), "--topic", topic],
                         env=dict(os.environ, PEAQOS_PRIVATE_KEY=key), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"peaqos-stream log {topic}: {out.stderr}"
    return [x for x in out.stdout.splitlines() if x]


def logged_package_lines(data_dir: Path) -> set[str]:
    """Every package line in the node's package log, whatever its segment layout (references to
    streamed packages resolved, see package_log)."""
    lines: set[str] = set()
    for d in (Path(data_dir) / "packages").iterdir() if (Path(data_dir) / "packages").is_dir() else []:
        raw: list[str] = []
        for f in sorted(d.glob("*")):
            if f.is_file() and f.suffix in (".jsonl", ".log"):
                raw += [x.strip() for x in f.read_text().splitlines() if x.strip()]
        if any(is_ref_line(x) for x in raw):
            lines.update(package_log(data_dir, (d / "topic").read_text().rstrip("\n")))
        else:
            lines.update(raw)
    return lines
