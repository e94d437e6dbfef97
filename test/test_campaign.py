"""The randomized crash-and-fault campaign's short mode (scripts/campaign.py --short): SIGKILLs
of the node, chain and S3 outages at seeded random moments under a mixed load, then an
independent audit (SDK, chain, S3): nothing acknowledged lost, nothing doubled."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from peaqos_harness import ROOT, scaled


def test_campaign_short_mode_loses_and_doubles_nothing(tmp_path):
    env = dict(os.environ)
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "campaign.py"), "--short", "--seed", "1",
                          "--work", str(tmp_path / "work")],
                         capture_output=True, text=True, timeout=scaled(600), env=env)
    report = next((json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")), None)
    assert report is not None, f"no report (exit {out.returncode}):\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
    assert out.returncode == 0, f"{report}\n{out.stderr[-4000:]}"
    assert report["lost"] == 0 and report["doubled"] == 0 and not report["problems"], report
    assert report["faults"]["kill9"] + report["faults"]["chain_down"] + report["faults"]["s3_down"] >= 2, report
    # The audit covered real traffic (how much depends on the machine's load: 100 to 400 packages
    # were seen in CI-like runs; the figures of a long run are in README).
    assert report["packages_audited"] >= 50 and report["chunks_audited"] > 0 and report["events_audited"] > 0, report
