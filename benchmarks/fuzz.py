"""The long run of the property tests: more examples, outcomes counted, a markdown table.

Runs ``tests/test_properties.py`` (random actions, random configurations, bad inputs) under
pytest with ``DG_FUZZ_EXAMPLES`` examples per test (random, not the CI's fixed cases) and
``DG_FUZZ_REPORT`` set, so every case is classified (ok / clear error / crash / silent /
valid input rejected) instead of failing at the first bad one; then prints the table of
docs/reliability.md ("Inputs and property tests") and the first examples of any crash,
silent or rejected case.

    python benchmarks/fuzz.py --examples 1000 --json fuzz.json
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
COLUMNS = ("ok", "clear", "crash", "silent", "rejected")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--examples", type=int, default=1000, help="hypothesis examples per test")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the counts here")
    a = p.parse_args(argv)
    if a.examples < 1:
        p.error("--examples must be >= 1")
    with tempfile.TemporaryDirectory() as tmp:
        report = pathlib.Path(tmp) / "report.json"
        env = {**os.environ, "DG_FUZZ_EXAMPLES": str(a.examples), "DG_FUZZ_REPORT": str(report)}
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               str(ROOT / "tests" / "test_properties.py")]  # fmt: skip
        rc = subprocess.run(cmd, env=env, cwd=ROOT).returncode
        seconds = time.perf_counter() - t0
        if not report.exists():
            print(f"pytest exited with {rc} before writing the report", file=sys.stderr)
            return 1
        data = json.loads(report.read_text())
    counts, examples = data["counts"], data["examples"]
    print(f"\n{a.examples} examples per test, {seconds:.0f} s\n")
    print("| family | cases tried | ok | clear errors | crashes | silent | valid rejected |")
    print("|---|---|---|---|---|---|---|")
    for family, c in counts.items():
        row = [c.get(k, 0) for k in COLUMNS]
        print(f"| {family} | {sum(row)} | " + " | ".join(map(str, row)) + " |")
    for family, lines in examples.items():
        print(f"\n{family}:")
        for line in lines[:10]:
            print("  " + line[:300])
    if a.json:
        out = {"examples_per_test": a.examples, "seconds": seconds, **data}
        pathlib.Path(a.json).write_text(json.dumps(out, indent=1))
    bad = sum(c.get(k, 0) for c in counts.values() for k in ("crash", "silent", "rejected"))
    return 1 if bad or rc != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
