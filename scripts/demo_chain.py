#!/usr/bin/env python3
"""Demo: activate the machine on the local chain through ~/activate, then submit one revenue
event through ~/submit_event, and print what the node answered."""
import json
import time

import rclpy

from peaqos_node.srv import Activate, SubmitEvent


def call(node, srv, name, **fields):
    cli = node.create_client(srv, f"/peaqos_node/{name}")
    if not cli.wait_for_service(timeout_sec=30):
        raise SystemExit(f"/peaqos_node/{name} is not available")
    req = srv.Request()
    for k, v in fields.items():
        setattr(req, k, v)
    fut = cli.call_async(req)
    rclpy.spin_until_future_complete(node, fut, timeout_sec=120)
    return fut.result()


def main() -> None:
    rclpy.init()
    node = rclpy.create_node("demo_chain")
    r = call(node, Activate, "activate", machine_type="demo-robot",
             credential_subject_hex="0x" + json.dumps({"serial": "DEMO-0001"}).encode().hex(),
             manufacturer="0x3333333333333333333333333333333333333333", tier=0)
    if r.success:
        print(f"activated: machine {r.machine_id} ({r.did}), tx {r.tx_hash}", flush=True)
    elif r.error_code == "ALREADY_ACTIVATED":
        print("already activated", flush=True)
    else:
        raise SystemExit(f"activate failed: {r.error_code} {r.error_field} {r.message}")
    machine_id = r.machine_id
    if machine_id:
        e = call(node, SubmitEvent, "submit_event", machine_id=machine_id, event_type=0, value="250",
                 currency="EUR", timestamp=int(time.time()) - 5, raw_data=list(b"demo fare"))
        print(f"revenue event: {'included in block ' + str(e.block_number) if e.success else e.error_code + ' ' + e.message}",
              flush=True)
    rclpy.shutdown()


if __name__ == "__main__":
    main()
