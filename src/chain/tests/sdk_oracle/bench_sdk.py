"""Time peaq-os-sdk 0.12.1 submit_event / batch_submit_events on the test chain (for the ratio in
tests/bench_anvil.rs). Usage: python bench_sdk.py <rpc_url> <owner_key> <machine_id> <timestamp> <n_single> <n_batches> <batch_size>
Prints JSON {"single_latencies_s": [...], "batch_seconds": float}."""
import json
import sys
import time

from peaq_os_sdk import DeploymentConfig, PeaqosClient
from peaq_os_sdk.types.events import SubmitEventParams

rpc, key, mid, ts, n_single, n_batches, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
c = PeaqosClient(rpc_url=rpc, private_key=key, deployment=DeploymentConfig(deployment_id="peaq-mainnet"))
kw = dict(machine_id=mid, event_type=0, value=123, timestamp=ts, raw_data=b"sensor:ok", trust_level=0,
          source_chain_id=3338, source_tx_hash=None, metadata=b'{"bench":true}')
lat = []
for _ in range(n_single):
    t = time.monotonic()
    c.submit_event(**kw)
    lat.append(time.monotonic() - t)
t = time.monotonic()
for _ in range(n_batches):
    c.batch_submit_events([SubmitEventParams(**kw, currency="USD") for _ in range(size)])
print(json.dumps({"single_latencies_s": lat, "batch_seconds": time.monotonic() - t}))
