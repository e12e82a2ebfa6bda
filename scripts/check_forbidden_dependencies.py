#!/usr/bin/env python3
"""Checks the resolved dependency trees of thinkscope's crates against what each may depend on.

The engine must never reach a GUI crate, whatever an import is called; wgpu may appear only
beneath the GPU backend crate. Modelled on rerun's scripts/check_forbidden_dependencies.py: the
check reads `cargo tree`, so a renamed import or a transitive dependency cannot slip past it.

    python3 scripts/check_forbidden_dependencies.py
"""

import json
import subprocess
import sys

GUI = ["egui", "eframe", "winit", "egui_plot", "egui-wgpu", "egui-winit", "egui_kittest", "rfd",
       "accesskit"]

# crate -> (forbidden dependencies, crates whose own subtrees are exempt)
RULES = {
    # The kernels are plain Rust: no GUI, no GPU, no candle (candle is their test oracle only).
    "thinkscope-kernels": (GUI + ["wgpu", "candle-core"], []),
    # The engine: no GUI; wgpu only through its GPU backend crate.
    "thinkscope-engine": (GUI + ["wgpu"], ["thinkscope-gpu"]),
    # The remote backend: no GUI, no GPU of its own, and blocking HTTP without an async runtime.
    "thinkscope-remote": (GUI + ["wgpu", "tokio"], ["thinkscope-gpu"]),
    # The command line needs no window either.
    "thinkscope-cli": (GUI + ["wgpu"], ["thinkscope-gpu"]),
}


def tree(package: str, prune: list[str]) -> set[str]:
    cmd = ["cargo", "tree", "--quiet", "-p", package, "-e", "normal,build", "--prefix", "none",
           "--format", "{p}"]
    for p in prune:
        cmd += ["--prune", p]
    try:
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    except subprocess.CalledProcessError as e:
        sys.exit(f"cargo tree failed for {package}:\n{e.stderr}")
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def workspace_packages() -> set[str]:
    meta = subprocess.run(["cargo", "metadata", "--no-deps", "--format-version", "1"], check=True,
                          capture_output=True, text=True).stdout
    return {p["name"] for p in json.loads(meta)["packages"]}


def main() -> int:
    bad = 0
    members = workspace_packages()
    for package, (forbidden, exempt) in RULES.items():
        if package not in members:
            print(f"{package}: not in the workspace")
            bad += 1
            continue
        names = tree(package, [e for e in exempt if e in members])
        found = sorted(n for n in names if n in forbidden)
        if found:
            bad += 1
            print(f"{package} depends on {', '.join(found)}: forbidden (see scripts/{__file__.split('/')[-1]})")
        else:
            print(f"{package}: {len(names)} crates, none forbidden")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
