"""The machine key at rest: a V3 keystore made on the machine by `peaqos-key` runs the node, its
packages verify with the SDK under the keystore's address, and the key's bytes are nowhere in
the data directory or the process environment; a wrong passphrase stops the node naming the
keystore; a plaintext key other than the demo's is warned about at start."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from peaqos_harness import NodeProcess, run_node_expecting_failure, sdk_verify

import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import BatteryState

from peaqos_node.msg import DataPackage

POLICY = """\
schema_version: 1
topics:
  - topic: /ks/battery
    type: sensor_msgs/msg/BatteryState
    qos: reliable
"""


def peaqos_key() -> str:
    exe = shutil.which("peaqos-key")
    if not exe and os.environ.get("PEAQOS_NODE_EXE"):
        exe = str(Path(os.environ["PEAQOS_NODE_EXE"]).with_name("peaqos-key"))
    assert exe and Path(exe).exists(), "peaqos-key is not built: scripts/setup (colcon build) installs it"
    return exe


def make_keystore(tmp: Path) -> tuple[Path, Path, str]:
    ks, pw = tmp / "machine.keystore.json", tmp / "passphrase"
    pw.write_text("robot passphrase\n")
    pw.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if k not in ("PEAQOS_PRIVATE_KEY", "PEAQOS_KEYSTORE_PASSWORD")}
    out = subprocess.run([peaqos_key(), "new", "--keystore", str(ks), "--passphrase-file", str(pw), "--kdf-light"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    address = next(line.split()[1] for line in out.stdout.splitlines() if line.startswith("address "))
    return ks, pw, address


def secret_of(ks: Path) -> bytes:
    from eth_account import Account
    return bytes(Account.decrypt(ks.read_text(), "robot passphrase"))


def test_keystore_key_runs_the_node_and_never_lands_in_plaintext(ros_node, tmp_path):
    ks, pw, address = make_keystore(tmp_path)
    (tmp_path / "policy.yaml").write_text(POLICY)
    data = tmp_path / "data"
    node = NodeProcess(tmp_path, {"policy_file": str(tmp_path / "policy.yaml"), "data_dir": str(data),
                                  "keystore_file": str(ks), "keystore_passphrase_file": str(pw),
                                  "chain.enabled": "false"},
                       env={"PEAQOS_PRIVATE_KEY": ""}).start()
    try:
        node.wait_for_log("subscribed to /ks/battery")
        assert f"machine {address}" in node.output()
        q = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        got: list[DataPackage] = []
        ros_node.create_subscription(DataPackage, "/peaqos_node/data_packages", got.append, q)
        pub = ros_node.create_publisher(BatteryState, "/ks/battery", q)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not got:
            if pub.get_subscription_count() > 0:
                m = BatteryState()
                m.voltage = 24.0
                pub.publish(m)
            rclpy.spin_once(ros_node, timeout_sec=0.2)
        assert got, f"no package; node log:\n{node.output()[-4000:]}"
        import json
        p = json.loads(got[0].package_json)
        assert p["did"] == f"did:peaq:{address}"
        assert sdk_verify(got[0].package_json)

        secret = secret_of(ks)
        needles = [secret, secret.hex().encode(), secret.hex().upper().encode()]
        for f in data.rglob("*"):
            if f.is_file():
                b = f.read_bytes()
                assert not any(n in b for n in needles), f"machine key bytes in {f}"
        environ = Path(f"/proc/{node.proc.pid}/environ").read_bytes()
        assert not any(n in environ for n in needles), "machine key in the process environment"
        assert secret.hex() not in node.output()
    finally:
        assert node.stop() == 0, node.output()


def test_wrong_passphrase_stops_the_node_naming_the_keystore(tmp_path):
    ks, pw, _ = make_keystore(tmp_path)
    bad = tmp_path / "bad"
    bad.write_text("not it")
    bad.chmod(0o600)
    code, out = run_node_expecting_failure(tmp_path, {"data_dir": str(tmp_path / "d"), "keystore_file": str(ks),
                                                      "keystore_passphrase_file": str(bad), "chain.enabled": "false"},
                                           env={"PEAQOS_PRIVATE_KEY": ""})
    assert code != 0
    assert "wrong passphrase" in out and str(ks) in out, out


def test_a_plaintext_key_other_than_the_demo_is_warned_about(tmp_path):
    (tmp_path / "policy.yaml").write_text(POLICY)
    node = NodeProcess(tmp_path, {"policy_file": str(tmp_path / "policy.yaml"), "data_dir": str(tmp_path / "d"),
                                  "chain.enabled": "false"},
                       env={"PEAQOS_PRIVATE_KEY": "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"})
    node.start()
    try:
        node.wait_for_log("subscribed to /ks/battery")
        assert "stored in plaintext (PEAQOS_PRIVATE_KEY)" in node.output()
        assert "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d" not in node.output()
    finally:
        assert node.stop() == 0, node.output()


def test_the_operator_key_from_a_keystore(tmp_path):
    """Legacy proxy flows' operator key: chain.operator_keystore_file (+ its passphrase file) is loaded
    at start (its address logged, never its key); a wrong passphrase stops the node naming the parameter."""
    ks, pw, address = make_keystore(tmp_path)
    (tmp_path / "policy.yaml").write_text(POLICY)
    params = {"policy_file": str(tmp_path / "policy.yaml"), "data_dir": str(tmp_path / "d"),
              "chain.operator_keystore_file": str(ks), "chain.operator_keystore_passphrase_file": str(pw),
              "chain.rpc_urls": "['http://127.0.0.1:9']"}
    node = NodeProcess(tmp_path, params, env={"PEAQOS_OPERATOR_PRIVATE_KEY": ""}).start()
    try:
        node.wait_for_log(f"operator key {address} loaded for legacy proxy flows")
        assert secret_of(ks).hex() not in node.output()
    finally:
        assert node.stop() == 0, node.output()
    bad = tmp_path / "bad"
    bad.write_text("not it")
    bad.chmod(0o600)
    code, out = run_node_expecting_failure(tmp_path, {**params, "chain.operator_keystore_passphrase_file": str(bad)})
    assert code != 0 and "chain.operator_keystore_file" in out and "wrong passphrase" in out, out


def test_on_a_terminal_the_node_asks_for_the_passphrase(tmp_path):
    """No passphrase file and no PEAQOS_KEYSTORE_PASSWORD: on a terminal the node asks (no echo), and
    runs on the key once answered."""
    import pty
    import select
    import signal
    ks, _, address = make_keystore(tmp_path)
    (tmp_path / "policy.yaml").write_text(POLICY)
    node = NodeProcess(tmp_path, {"policy_file": str(tmp_path / "policy.yaml"), "data_dir": str(tmp_path / "d"),
                                  "keystore_file": str(ks), "chain.enabled": "false"})
    env = {k: v for k, v in node.env.items() if k not in ("PEAQOS_PRIVATE_KEY", "PEAQOS_KEYSTORE_PASSWORD")}
    argv = node.argv()
    pid, fd = pty.fork()
    if pid == 0:  # the child: the node on the pty
        os.execve(argv[0], argv, env)
    seen = b""

    def read_until(text: bytes, timeout: float) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while text not in seen:
            assert time.monotonic() < deadline, f"no {text!r} on the terminal; it showed:\n{seen.decode(errors='replace')}"
            if select.select([fd], [], [], 0.2)[0]:
                try:
                    seen += os.read(fd, 4096)
                except OSError:
                    break
    try:
        read_until(b"passphrase of " + str(ks).encode(), 20)
        time.sleep(0.5)  # as a person types: after the prompt has turned echo off
        os.write(fd, b"robot passphrase\n")
        read_until(b"subscribed to /ks/battery", 30)
        assert f"machine {address}".encode() in seen
        assert b"robot passphrase" not in seen, "the passphrase is not echoed"
    finally:
        os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and os.waitpid(pid, os.WNOHANG) == (0, 0):
            time.sleep(0.1)
        os.close(fd)
