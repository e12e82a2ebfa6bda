#!/usr/bin/env bash
# Run the kernel tests (portable kernel, repacking, every format against candle) on 64-bit ARM
# under qemu. The kernels are their own crate (crates/kernels), so only it and its test oracle
# are cross-compiled, not the GUI stack. Needs: rustup target add aarch64-unknown-linux-gnu, and
#   apt-get install qemu-user-static gcc-aarch64-linux-gnu libc6-dev-arm64-cross
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64-static -L /usr/aarch64-linux-gnu"
# `target-cpu=native` (.cargo/config.toml) names this machine's CPU: not one for the cross target.
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS=""
export CARGO_TARGET_DIR="${AARCH64_TARGET_DIR:-${TMPDIR:-/tmp}/thinkscope-aarch64}"
cargo test -p thinkscope-kernels --target aarch64-unknown-linux-gnu "$@"
