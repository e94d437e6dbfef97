#!/usr/bin/env python3
"""Count what `colcon test` ran for peaqos_node: the cargo tests (their `test result:` lines in
the output ament kept) and the pytest suite (its JUnit XML). Prints one line,
`tests: N passed, N failed, N skipped`, and exits 1 when a count is missing, anything failed or
anything was skipped (cargo's `ignored` counts as skipped)."""
from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

CARGO_OUTPUTS = ("ament_cmake_test/cargo_test.txt", "ament_cmake_test/node_unit_test.txt")
PYTEST_XML = "test_results/peaqos_node/graph_test.xunit.xml"
CARGO_LINE = re.compile(r"test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored")


def main(build: Path) -> int:
    passed = failed = skipped = 0
    missing = []
    for rel in CARGO_OUTPUTS:
        path = build / rel
        if not path.exists():
            missing.append(rel)
            continue
        lines = CARGO_LINE.findall(path.read_text(errors="replace"))
        if not lines:
            missing.append(f"{rel} (no `test result:` line)")
        for p, f, i in lines:
            passed, failed, skipped = passed + int(p), failed + int(f), skipped + int(i)
    xml = build / PYTEST_XML
    if xml.exists():
        root = ET.parse(xml).getroot()
        for suite in ([root] if root.tag == "testsuite" else root.iter("testsuite")):
            total = int(suite.get("tests", 0))
            bad = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
            skip = int(suite.get("skipped", 0))
            passed, failed, skipped = passed + total - bad - skip, failed + bad, skipped + skip
    else:
        missing.append(PYTEST_XML)
    for m in missing:
        print(f"test summary: missing {build / m}: that part of the tests did not run", file=sys.stderr)
    print(f"tests: {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if missing or failed or skipped else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "build/peaqos_node")))
