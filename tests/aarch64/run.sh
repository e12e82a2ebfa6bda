#!/usr/bin/env bash
# Run the kernel tests (portable kernel, repacking, every format against candle) on 64-bit ARM
# under qemu: the kernels module is built alone in a scratch crate, so the GUI stack is not
# cross-compiled. Needs: rustup target add aarch64-unknown-linux-gnu, and
#   apt-get install qemu-user-static gcc-aarch64-linux-gnu libc6-dev-arm64-cross
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="${AARCH64_WORK:-${TMPDIR:-/tmp}/thinkscope-aarch64}"
mkdir -p "$work/src" "$work/.cargo"
cp "$here/Cargo.toml.in" "$work/Cargo.toml"
sed "s|@KERNELS@|$root/src/engine/kernels/mod.rs|" "$here/lib.rs.in" > "$work/src/lib.rs"
cat > "$work/.cargo/config.toml" <<'TOML'
[target.aarch64-unknown-linux-gnu]
linker = "aarch64-linux-gnu-gcc"
runner = "qemu-aarch64-static -L /usr/aarch64-linux-gnu"
TOML
cd "$work"
CARGO_TARGET_DIR="$work/target" cargo test --target aarch64-unknown-linux-gnu "$@"
