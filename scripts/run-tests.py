#!/usr/bin/env python3
"""Runs the workspace's test binaries, several at once, as `cargo test --workspace` would run
them one after the other.

Most of the test time goes to end-to-end tests that wait on real processes (a control plane,
an operator, a router): a release takes its intervals whatever the CPU does. Running a few
binaries side by side uses that waiting. Each binary still runs its own tests the way cargo
runs them (same working directory, same harness, its tests in parallel threads), keeps its own
control plane, and has its output printed as one block when it ends.

    scripts/run-tests.py [--jobs N] [-- ARGS...]

ARGS go to every test binary (a filter, --nocapture...). The exit code is 1 when any binary
failed; the summary lists each binary with its time and result. Doc-tests run at the end.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

# Binaries that take minutes start first, longest first, so that short ones fill the gaps
# (measured on a 2-core machine; names are the test targets').
LONG_FIRST = [
    "operator_e2e",
    "faults",
    "standalone",
    "cli",
    "grafana",
    "dashboard",
    "demo",
    "proxy",
    "kubernetes",
    "prometheus",
]


def build(root):
    """Builds every test and returns (name, package, executable, cwd) for each binary."""
    cmd = ["cargo", "test", "--workspace", "--locked", "--no-run", "--message-format=json-render-diagnostics"]
    out = subprocess.run(cmd, cwd=root, stdout=subprocess.PIPE, check=True, text=True).stdout
    bins = []
    for line in out.splitlines():
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            continue
        if msg.get("reason") != "compiler-artifact" or not msg.get("profile", {}).get("test"):
            continue
        exe = msg.get("executable")
        if not exe:
            continue
        target = msg["target"]
        kind = target["kind"][0]
        package = msg["package_id"]
        name = target["name"] if kind == "test" else f"{target['name']} ({kind})"
        cwd = os.path.dirname(msg["manifest_path"])
        bins.append((name, package, exe, cwd))
    return bins


def order(bins):
    def key(b):
        name = b[0]
        return (LONG_FIRST.index(name) if name in LONG_FIRST else len(LONG_FIRST), name)

    return sorted(bins, key=key)


def main():
    args = sys.argv[1:]
    jobs = int(os.environ.get("SISKIN_TEST_JOBS", "2"))
    extra = []
    if "--" in args:
        extra = args[args.index("--") + 1 :]
        args = args[: args.index("--")]
    if args[:1] == ["--jobs"]:
        jobs = int(args[1])
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    bins = order(build(root))
    print(f"running {len(bins)} test binaries, {jobs} at a time", flush=True)

    env = dict(os.environ)
    env.setdefault("CARGO", shutil.which("cargo") or "cargo")
    lock = threading.Lock()
    queue = list(bins)
    results = []
    logs = tempfile.mkdtemp(prefix="siskin-tests.")

    def worker():
        while True:
            with lock:
                if not queue:
                    return
                name, package, exe, cwd = queue.pop(0)
            log = os.path.join(logs, os.path.basename(exe) + ".log")
            started = time.monotonic()
            with open(log, "w") as f:
                code = subprocess.run([exe] + extra, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT).returncode
            took = time.monotonic() - started
            with lock:
                crate = package.split("#")[0].rstrip("/").rsplit("/", 1)[-1]
                print(f"\n=== {crate}: {name} ({os.path.relpath(exe, root)}) — {'ok' if code == 0 else f'FAILED (exit {code})'} in {took:.1f}s", flush=True)
                with open(log) as f:
                    sys.stdout.write(f.read())
                sys.stdout.flush()
                results.append((took, crate, name, code))

    threads = [threading.Thread(target=worker) for _ in range(max(1, jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    doc = subprocess.run(["cargo", "test", "--workspace", "--locked", "--doc"], cwd=root)
    print("\nsummary (slowest first):")
    for took, crate, name, code in sorted(results, reverse=True):
        print(f"  {took:7.1f}s  {'ok    ' if code == 0 else 'FAILED'}  {crate}: {name}")
    failed = [r for r in results if r[3] != 0]
    if doc.returncode != 0:
        print("  doc-tests FAILED")
    if failed or doc.returncode != 0:
        print(f"{len(failed)} test binaries failed" + ("; doc-tests failed" if doc.returncode else ""))
        return 1
    print(f"all {len(results)} test binaries passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
