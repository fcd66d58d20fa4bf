#!/usr/bin/env bash
# Builds the playground's WebAssembly and its JS bindings into playground/pkg/:
#
#   playground/pkg/vostok_playground.js        ES module (wasm-bindgen --target web)
#   playground/pkg/vostok_playground_bg.wasm   the core and the playground API
#
# Usage: scripts/build-playground.sh
#
# rustup has no wasm32 target on the project's machines, so `std` is built from source with
# Debian's own Rust (packages rustc-web, cargo-web, rust-web-src) and linked with wasm-ld-19
# (package lld-19), as the wasm step of scripts/test.sh does; missing packages are installed with
# apt-get (root or sudo). wasm-bindgen-cli must be exactly the version of the wasm-bindgen crate
# in Cargo.lock; it is installed with cargo when missing (a few minutes, once). wasm-opt
# (package binaryen) shrinks the module further when it is installed and understands it.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

# rustup's cargo first: it installs wasm-bindgen-cli; Debian's cargo only builds the wasm.
rustup_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
if [[ -d "$rustup_bin" ]]; then
    PATH="$rustup_bin:$PATH"
fi

# shellcheck source=scripts/lib.sh
source "$repo_root/scripts/lib.sh"
ensure_wasm_toolchain

# The wasm-bindgen crate version the lock file pins; the CLI must match it exactly.
bindgen_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, "", $0); print; exit }' Cargo.lock)
[[ -n "$bindgen_version" ]] || die "wasm-bindgen is not in Cargo.lock"
installed_version=$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }' || true)
if [[ "$installed_version" != "$bindgen_version" ]]; then
    echo "installing wasm-bindgen-cli $bindgen_version (found: ${installed_version:-none})"
    # Without --locked: the CLI's own lock pins a crate version the registry no longer serves.
    cargo install wasm-bindgen-cli --version "$bindgen_version" --force ||
        die "cargo install wasm-bindgen-cli --version $bindgen_version failed"
fi

# A target dir of its own: Debian's rustc and rustup's stable must not share artifacts.
target_dir="$repo_root/target/wasm"
start_s=$(date +%s)
env -u RUSTUP_TOOLCHAIN \
    RUSTC=/usr/bin/rustc \
    RUSTC_BOOTSTRAP=1 \
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-ld-19 \
    /usr/bin/cargo build -p vostok-playground --profile wasm-release --locked \
    -Zbuild-std=std,panic_abort --target wasm32-unknown-unknown \
    --target-dir "$target_dir"
echo "cargo build took $(($(date +%s) - start_s))s"

wasm="$target_dir/wasm32-unknown-unknown/wasm-release/vostok_playground.wasm"
[[ -s "$wasm" ]] || die "expected wasm artifact missing: $wasm"

out_dir="$repo_root/playground/pkg"
rm -rf "$out_dir"
wasm-bindgen --target web --out-dir "$out_dir" "$wasm"

bg="$out_dir/vostok_playground_bg.wasm"
[[ -s "$bg" && -s "$out_dir/vostok_playground.js" ]] || die "wasm-bindgen produced no output in $out_dir"
before=$(stat -c %s "$bg")
if command -v wasm-opt >/dev/null 2>&1; then
    # Rust's wasm32 target emits bulk-memory, sign-ext and other post-MVP instructions: enable
    # them all. An older wasm-opt that still cannot read the module leaves it as it is.
    if wasm-opt -Oz --all-features "$bg" -o "$bg.opt" 2>"$out_dir/wasm-opt.log"; then
        mv "$bg.opt" "$bg"
        rm -f "$out_dir/wasm-opt.log"
    else
        echo "wasm-opt could not optimize the module (see $out_dir/wasm-opt.log); keeping it as built"
        rm -f "$bg.opt"
    fi
else
    echo "wasm-opt not installed (package binaryen): skipping the extra size pass"
fi
size=$(stat -c %s "$bg")
printf 'built %s: %s bytes (%s KiB; %s bytes before wasm-opt)\n' \
    "$bg" "$size" "$((size / 1024))" "$before"
