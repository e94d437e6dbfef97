"""Shared helpers for the end-to-end tests: start the real node, talk to it with rclpy,
check packages with the real peaq SDK."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Hardhat/anvil account #0: a public test key, never a real machine's.
DEMO_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
DEMO_ADDRESS = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
DEMO_DID = f"did:peaq:{DEMO_ADDRESS}"


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
                 node_name: str | None = None, log_level: str | None = "debug"):
        self.tmp = Path(tmp)
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
        for k, v in self.params.items():
            args += ["-p", f"{k}:={v}"]
        return args

    def start(self) -> "NodeProcess":
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv(), stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
        return self

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def requests_seen(self, service: str) -> int:
        """How many requests to `service` (`~/activate`, ...) reached the node."""
        return len(re.findall(rf"request {re.escape(service)}$", self.output(), re.M))

    def wait_for_log(self, text: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return
            if self.proc and self.proc.poll() is not None:
                raise AssertionError(f"node exited ({self.proc.returncode}) before logging {text!r}:\n{self.output()}")
            time.sleep(0.05)
        raise AssertionError(f"node did not log {text!r} in {timeout}s:\n{self.output()}")

    def stop(self, timeout: float = 15.0) -> int:
        assert self.proc
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
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
    never reached the node); one the node has seen is waited for until `timeout`. A timeout
    fails with the node's log, so the reason is in the test report."""
    import rclpy

    assert cli.wait_for_service(timeout_sec=20), f"service {cli.srv_name} not available"
    service = "~/" + cli.srv_name.rsplit("/", 1)[-1]
    seen = proc.requests_seen(service) if proc else 0
    deadline = time.monotonic() + timeout
    fut = cli.call_async(req)
    sent = time.monotonic()
    while not fut.done() and time.monotonic() < deadline:
        rclpy.spin_once(ros_node, timeout_sec=0.05)
        if (proc is not None and not fut.done() and time.monotonic() - sent > resend_after
                and proc.requests_seen(service) == seen):
            cli.remove_pending_request(fut)
            fut = cli.call_async(req)
            sent = time.monotonic()
    if not fut.done():
        tail = proc.output()[-6000:] if proc else "(no node log)"
        raise AssertionError(f"{cli.srv_name} did not answer in {timeout}s; node log tail:\n{tail}")
    return fut.result()


def run_node_expecting_failure(tmp: Path, params: dict[str, str], env: dict[str, str] | None = None,
                               timeout: float = 20.0) -> tuple[int, str]:
    """Run the node until it exits by itself; return (exit code, output)."""
    n = NodeProcess(tmp, params, env, name="failing")
    proc = subprocess.run(n.argv(), env=n.env, capture_output=True, text=True, timeout=timeout)
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


def logged_package_lines(data_dir: Path) -> set[str]:
    """Every package line in the node's package log, whatever its segment layout."""
    lines: set[str] = set()
    for f in (Path(data_dir) / "packages").rglob("*"):
        if f.is_file() and f.suffix in (".jsonl", ".log"):
            for line in f.read_text().splitlines():
                if line.strip():
                    lines.add(line.strip())
    return lines
