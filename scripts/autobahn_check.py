#!/usr/bin/env python3
"""Reads kosoku's index.json and fails on any case that is not clean.

Usage: autobahn_check.py INDEX_JSON [EXPECTED_CASES (default 517)]

A case fails the gate unless its behavior is OK or INFORMATIONAL and its close behavior
is too: FAILED, NON-STRICT, UNIMPLEMENTED (the compression cases 12.x and 13.x run,
since the server under test accepts permessage-deflate) and ERROR all fail it.
"""
import collections
import json
import sys


def main(path: str, expected: int = 517) -> int:
    with open(path) as f:
        index = json.load(f)
    counts = collections.Counter()
    bad = []
    total = 0
    for agent, cases in index.items():
        for case_id, result in cases.items():
            total += 1
            behavior = result.get("behavior")
            close = result.get("behaviorClose")
            counts[behavior] += 1
            if behavior not in ("OK", "INFORMATIONAL") or close not in ("OK", "INFORMATIONAL"):
                bad.append(f"{agent} {case_id}: behavior={behavior} close={close}")
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    print(f"autobahn: {total} cases: {summary}")
    if total == 0:
        print("autobahn: no cases ran")
        return 1
    if bad:
        print(f"autobahn: {len(bad)} cases not clean:")
        for line in bad:
            print("  " + line)
        return 1
    if total < expected:
        print(f"autobahn: only {total} of {expected} cases ran")
        return 1
    print("autobahn: 0 FAILED, 0 NON-STRICT, 0 UNIMPLEMENTED")
    return 0


if __name__ == "__main__":
    path = sys.argv[1] if len(sys.argv) > 1 else "reports/autobahn/index.json"
    expected = int(sys.argv[2]) if len(sys.argv) > 2 else 517
    sys.exit(main(path, expected))
