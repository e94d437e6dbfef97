"""Run the real peaq-os-sdk 0.12.1 event calls against a running test chain and print the outcome
of each case as JSON (code + message, or ok). Used by tests/sdk_onchain.rs, which runs the same
cases through peaqos_chain and requires identical codes and messages.

Usage: python onchain_errors.py <rpc_url> <owner_key> <stranger_key> <machine_id> <timestamp>
"""
import json
import sys

from peaq_os_sdk import DeploymentConfig, PeaqosClient
from peaq_os_sdk.exceptions import PeaqosError
from peaq_os_sdk.types.events import SubmitEventParams

rpc, owner_key, stranger_key, machine_id, ts = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])


def client(key):
    return PeaqosClient(rpc_url=rpc, private_key=key, deployment=DeploymentConfig(deployment_id="peaq-mainnet"))


def kw_ev(mid, timestamp, **kw):
    base = dict(machine_id=mid, event_type=0, value=123, timestamp=timestamp, raw_data=b"sensor:ok",
                trust_level=0, source_chain_id=3338, source_tx_hash=None, metadata=b'{"mode":"self"}')
    base.update(kw)
    return base


def ev(mid, timestamp, **kw):
    return SubmitEventParams(**kw_ev(mid, timestamp, **kw))


def run(fn):
    try:
        fn()
        return {"ok": True}
    except PeaqosError as e:
        return {"ok": False, "code": getattr(e, "code", ""), "message": str(e.args[0]) if e.args else str(e)}


owner, stranger = client(owner_key), client(stranger_key)
out = {
    "future_timestamp": run(lambda: owner.submit_event(**kw_ev(machine_id, ts + 86400 * 365))),
    "unknown_machine": run(lambda: owner.submit_event(**kw_ev(777, ts))),
    "stranger": run(lambda: stranger.submit_event(**kw_ev(machine_id, ts))),
    "metadata_too_large": run(lambda: owner.submit_event(**kw_ev(machine_id, ts, metadata=b"x" * 5000))),
    "activity_ok": run(lambda: owner.submit_event(**kw_ev(machine_id, ts, event_type=1, currency=""))),
    "batch_stranger_single": run(lambda: stranger.batch_submit_events([ev(machine_id, ts, currency="USD"), ev(machine_id, ts, currency="EUR")])),
    "batch_unknown_two": run(lambda: owner.batch_submit_events([ev(777, ts, currency="USD"), ev(778, ts, currency="USD")])),
    "batch_future": run(lambda: owner.batch_submit_events([ev(machine_id, ts, currency="USD"), ev(machine_id, ts + 86400 * 365, currency="USD")])),
}
print(json.dumps(out))
