#!/usr/bin/env python3
"""Reads kosoku's index.json and fails on any case that is not clean.

kosoku exits 1 whenever a case is UNIMPLEMENTED (every compression case, 12.x and 13.x,
until permessage-deflate exists), so its exit code cannot be the gate: this script is.
A case fails the gate when its behavior is FAILED or NON-STRICT, when its close behavior
is not OK/INFORMATIONAL, or when it is UNIMPLEMENTED outside 12.x/13.x.
"""
import collections
import json
import sys


def main(path: str) -> int:
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
            group = case_id.split(".")[0]
            if behavior in ("OK", "INFORMATIONAL"):
                pass
            elif behavior == "UNIMPLEMENTED" and group in ("12", "13"):
                pass
            else:
                bad.append(f"{agent} {case_id}: behavior={behavior} close={close}")
                continue
            if close not in ("OK", "INFORMATIONAL") and behavior != "UNIMPLEMENTED":
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
    print("autobahn: 0 FAILED, 0 NON-STRICT (UNIMPLEMENTED only in 12.x/13.x compression)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "reports/autobahn/index.json"))
