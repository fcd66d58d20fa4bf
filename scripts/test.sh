#!/usr/bin/env bash
# Runs every check of the project, in order, stopping at the first failure:
#
#   fmt     cargo fmt --check over the workspace and the fuzz crate
#   clippy  cargo clippy over every target of the workspace, warnings are errors
#   test    the test suite (cargo-nextest when installed, else cargo test) and the doc tests;
#           installs Debian's `prometheus` package first when missing (runtime-native/tests/
#           metrics.rs scrapes the broker with a real Prometheus server and fails without it),
#           and Node.js with tests/grpc-node's modules (RocketMQ 5's Node.js client)
#   wasm    vostok-core built for wasm32-unknown-unknown
#   sim     vostok-sim built with --cfg madsim in target/sim, VOSTOK_SIM_SEEDS seeds run (default
#           500) from a start seed derived from the commit (VOSTOK_SIM_START overrides it; a
#           failing seed prints its replay command), the fixed regression seeds, then its
#           determinism and defect-detection tests (feature `defects`)
#   fuzz    every cargo-fuzz target built, then run for VOSTOK_FUZZ_SECONDS each (default 25) from
#           its committed seeds; any crash fails the step and names the reproducer
#   playground  the playground's WebAssembly build (scripts/build-playground.sh), `vostok` with it
#           embedded, then tests/browser in headless Chromium against `vostok playground`;
#           screenshots go to target/browser-artifacts/
#
# Usage: scripts/test.sh [STEP...]   (no argument: every step, in the order above)
#
# The script runs on a fresh Debian 12 machine with a rustup stable toolchain and installs what it
# lacks. rustup cannot download the wasm32 target there, so the wasm step builds `std` from source
# with Debian's own Rust (packages rustc-web, cargo-web, rust-web-src) and links with wasm-ld-19
# (package lld-19); see docs/ARCHITECTURE.md. Those packages are installed through apt-get when
# missing, which needs root or sudo.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

# rustup's proxies come first: once the wasm step has installed Debian's Rust, /usr/bin/cargo
# exists too, and it has neither rustfmt nor clippy.
rustup_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
if [[ -d "$rustup_bin" ]]; then
    PATH="$rustup_bin:$PATH"
fi

all_steps=(fmt clippy test wasm sim fuzz playground)
if [[ $# -eq 0 ]]; then
    steps=("${all_steps[@]}")
else
    steps=("$@")
fi

script_start_s=$(date +%s)
current_step=""
step_start_s=0

# Prints a header and remembers when the step began.
begin_step() {
    current_step="$1"
    step_start_s=$(date +%s)
    printf '\n==> [%s] %s\n' "$current_step" "$2"
}

end_step() {
    printf '==> [%s] ok (%ss)\n' "$current_step" "$(($(date +%s) - step_start_s))"
    current_step=""
}

on_exit() {
    local status=$?
    if [[ $status -ne 0 && -n "$current_step" ]]; then
        printf '\n==> [%s] FAILED after %ss (exit %s)\n' \
            "$current_step" "$(($(date +%s) - step_start_s))" "$status" >&2
    fi
}
trap on_exit EXIT

# shellcheck source=scripts/lib.sh
source "$repo_root/scripts/lib.sh"

# Makes sure a rustup component (rustfmt, clippy) is there; rustup may have no network, so a
# missing component that cannot be added is a clear error rather than a confusing cargo one.
ensure_rustup_component() {
    local component="$1" probe="$2"
    if ! cargo "$probe" --version >/dev/null 2>&1; then
        echo "installing rustup component $component"
        rustup component add "$component" || die "rustup component $component is missing and cannot be installed"
    fi
}

step_fmt() {
    begin_step fmt "cargo fmt --all -- --check"
    ensure_rustup_component rustfmt fmt
    cargo fmt --all -- --check
    # The fuzz crate is a workspace of its own (it needs nightly to build), so `--all` skips it;
    # rustfmt checks its sources directly, which needs neither nightly nor its dependencies.
    if compgen -G 'fuzz/fuzz_targets/*.rs' >/dev/null; then
        echo "rustfmt --check fuzz/src/*.rs fuzz/fuzz_targets/*.rs"
        rustfmt --edition 2021 --check fuzz/src/*.rs fuzz/fuzz_targets/*.rs
    fi
    end_step
}

step_clippy() {
    begin_step clippy "cargo clippy --workspace --all-targets -- -D warnings"
    ensure_rustup_component clippy clippy
    cargo clippy --workspace --all-targets --locked -- -D warnings
    end_step
}

# Node.js 20+ and npm, from Debian when missing (RocketMQ 5's Node client, the browser tests).
ensure_node() {
    if ! command -v node >/dev/null 2>&1; then ensure_apt_packages nodejs; fi
    if ! command -v npm >/dev/null 2>&1; then ensure_apt_packages npm; fi
    local node_major
    node_major=$(node -p 'process.versions.node.split(".")[0]')
    [[ "$node_major" -ge 20 ]] || die "the Node.js tests need Node.js 20 or newer, found $(node --version)"
}

# `npm ci` in a test directory whose node_modules is missing or older than its lock.
ensure_npm_modules() {
    local dir="$1"
    if [[ ! -d "$dir/node_modules" ]] ||
        [[ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]]; then
        (cd "$dir" && npm ci --no-audit --no-fund)
    fi
}

step_test() {
    # tests/metrics.rs scrapes the broker with Debian's Prometheus server.
    ensure_apt_packages prometheus
    # tests/grpc*.rs drive RocketMQ 5's official Node.js client (tests/grpc-node, pinned in its
    # package-lock.json).
    ensure_node
    ensure_npm_modules tests/grpc-node
    if cargo nextest --version >/dev/null 2>&1; then
        begin_step test "cargo nextest run --workspace"
        cargo nextest run --workspace --locked --no-tests=warn
        echo "cargo test --workspace --doc"
        cargo test --workspace --doc --locked
    else
        begin_step test "cargo test --workspace (cargo-nextest not installed)"
        cargo test --workspace --locked
    fi
    end_step
}

# The simulator: its own target dir, since RUSTFLAGS changes force full rebuilds.
# The seed range starts where the commit says (the first 8 hex digits of its id, as a number),
# so every commit explores schedules no earlier run has; VOSTOK_SIM_START overrides it. A failure
# prints its seed and replay command. Then the fixed regression seeds (REGRESSION_SEEDS).
sim_start_seed() {
    if [[ -n "${VOSTOK_SIM_START:-}" ]]; then
        echo "$VOSTOK_SIM_START"
    elif rev=$(git -C "$repo_root" rev-parse HEAD 2>/dev/null); then
        echo $((16#${rev:0:8}))
    else
        echo 0
    fi
}

step_sim() {
    local seeds="${VOSTOK_SIM_SEEDS:-500}" start
    start=$(sim_start_seed)
    begin_step sim "vostok-sim --seeds $seeds --start $start, regression seeds, determinism and defect tests (--cfg madsim)"
    export RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR="$repo_root/target/sim"
    cargo build --release --locked -p vostok-sim
    "$CARGO_TARGET_DIR/release/vostok-sim" --seeds "$seeds" --start "$start" | grep -v '^seed='
    "$CARGO_TARGET_DIR/release/vostok-sim" --regressions
    cargo test --release --locked -p vostok-sim --features defects
    unset RUSTFLAGS CARGO_TARGET_DIR
    end_step
}

step_wasm() {
    begin_step wasm "vostok-core for wasm32-unknown-unknown"
    ensure_wasm_toolchain
    /usr/bin/rustc --version

    # A target dir of its own: Debian's rustc and rustup's stable must not share artifacts.
    # RUSTUP_TOOLCHAIN is dropped so nothing routes the build back through rustup's proxies.
    local target_dir="$repo_root/target/wasm"
    env -u RUSTUP_TOOLCHAIN \
        RUSTC=/usr/bin/rustc \
        RUSTC_BOOTSTRAP=1 \
        CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-ld-19 \
        /usr/bin/cargo build -p vostok-core --release --locked \
        -Zbuild-std=std,panic_abort --target wasm32-unknown-unknown \
        --target-dir "$target_dir"

    local artifact="$target_dir/wasm32-unknown-unknown/release/libvostok_core.rlib"
    [[ -s "$artifact" ]] || die "expected wasm artifact missing: $artifact"
    # An rlib is an ar archive of object files; for this target they must be WebAssembly modules.
    if command -v ar >/dev/null 2>&1; then
        local object magic
        object=$(ar t "$artifact" | grep -m1 '\.o$') || die "no object file inside $artifact"
        # od stops after 4 bytes and ar then dies of SIGPIPE: expected, so no pipefail here.
        magic=$(set +o pipefail; ar p "$artifact" "$object" | od -An -N4 -tx1 | tr -d ' \n')
        [[ "$magic" == "0061736d" ]] || die "$object in $artifact is not WebAssembly (magic $magic)"
    fi
    echo "built $artifact ($(stat -c %s "$artifact") bytes, WebAssembly objects)"
    end_step
}

# The fuzz crate needs nightly compiler flags (libFuzzer's instrumentation) and cargo-fuzz. The
# nightly toolchain is used when rustup has or can install it; otherwise the stable toolchain is
# told to accept those flags (RUSTC_BOOTSTRAP=1), which builds the same instrumented targets.
# Sets `fuzz_cargo`, the command that runs cargo for the fuzz crate.
fuzz_cargo=()
ensure_fuzz_tools() {
    if rustup run nightly rustc --version >/dev/null 2>&1; then
        fuzz_cargo=(cargo +nightly)
    elif echo "installing the nightly toolchain with rustup" &&
        rustup toolchain install nightly --profile minimal; then
        fuzz_cargo=(cargo +nightly)
    else
        echo "no nightly toolchain: building the fuzz targets with stable and RUSTC_BOOTSTRAP=1"
        fuzz_cargo=(env RUSTC_BOOTSTRAP=1 cargo)
    fi
    if ! cargo fuzz --version >/dev/null 2>&1; then
        echo "installing cargo-fuzz"
        cargo install cargo-fuzz --locked ||
            die "the fuzz step needs cargo-fuzz and 'cargo install cargo-fuzz --locked' failed"
    fi
}

# Runs every fuzz target for a bounded time from its committed seeds (fuzz/seeds/<target>).
# libFuzzer writes new inputs into the corpus directory it is given, so each run works on a
# scratch copy of the seeds and the committed corpus is never touched. A crash stops the run with
# the reproducer saved under fuzz/artifacts/<target>/; the step then fails naming it.
step_fuzz() {
    local seconds="${VOSTOK_FUZZ_SECONDS:-25}"
    [[ "$seconds" =~ ^[0-9]+$ && "$seconds" -gt 0 ]] ||
        die "VOSTOK_FUZZ_SECONDS must be a positive number of seconds, not '$seconds'"
    begin_step fuzz "cargo fuzz: every target for ${seconds}s"
    ensure_fuzz_tools
    (cd fuzz && "${fuzz_cargo[@]}" --version)
    local targets
    mapfile -t targets < <(cd fuzz && "${fuzz_cargo[@]}" fuzz list)
    [[ ${#targets[@]} -gt 0 ]] || die "cargo fuzz list found no targets"
    # The core forbids unsafe code, so the address sanitizer adds cost and finds nothing more:
    # panics, overflow checks and debug assertions are what catch bugs here.
    local fuzz_flags=(--sanitizer none)
    echo "building ${#targets[@]} targets: ${targets[*]}"
    (cd fuzz && "${fuzz_cargo[@]}" fuzz build "${fuzz_flags[@]}")

    local scratch target corpus artifacts log status failed=()
    scratch=$(mktemp -d "${TMPDIR:-/tmp}/vostok-fuzz.XXXXXX")
    for target in "${targets[@]}"; do
        corpus="$scratch/corpus/$target"
        artifacts="$repo_root/fuzz/artifacts/$target"
        log="$scratch/$target.log"
        mkdir -p "$corpus" "$artifacts"
        if [[ -d "fuzz/seeds/$target" ]]; then
            cp -R "fuzz/seeds/$target/." "$corpus/"
        fi
        printf -- '--- %s: %s seeds, %ss\n' "$target" "$(find "$corpus" -type f | wc -l)" "$seconds"
        status=0
        (cd fuzz && "${fuzz_cargo[@]}" fuzz run "${fuzz_flags[@]}" "$target" "$corpus" -- \
            -max_total_time="$seconds" -artifact_prefix="$artifacts/" -print_final_stats=1 \
            -rss_limit_mb=2048 -timeout=10) >"$log" 2>&1 || status=$?
        # The last status line carries the execution count and rate.
        grep -E '^#[0-9]+' "$log" | tail -n 1 || true
        grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$log" || true
        if [[ $status -ne 0 ]]; then
            tail -n 40 "$log" >&2
            local reproducer
            reproducer=$(grep -oE "Test unit written to [^ ]+" "$log" | tail -n 1 | cut -d' ' -f5-)
            echo "error: fuzz target $target failed (exit $status); reproducer: ${reproducer:-none written}" >&2
            echo "       replay it with: (cd fuzz && ${fuzz_cargo[*]} fuzz run --sanitizer none $target ${reproducer:-<file>})" >&2
            failed+=("$target")
        fi
    done
    rm -rf "$scratch"
    [[ ${#failed[@]} -eq 0 ]] || die "fuzz targets failed: ${failed[*]}"
    end_step
}

# Installs the Debian packages among "$@" that are not installed yet (one apt-get run).
ensure_apt_packages() {
    local pkg missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$pkg")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    echo "installing ${missing[*]} with apt-get"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# The playground end to end: the core compiled to WebAssembly, embedded in `vostok` (its build.rs
# picks up playground/pkg/), served by `vostok playground`, driven by Debian's Chromium through
# playwright-core (tests/browser, pinned in its package-lock.json; never a downloaded browser).
step_playground() {
    begin_step playground "playground: wasm build, vostok playground, headless Chromium tests"
    [[ -x scripts/build-playground.sh ]] || die "scripts/build-playground.sh is missing"
    scripts/build-playground.sh
    [[ -s playground/pkg/vostok_playground_bg.wasm ]] || die "scripts/build-playground.sh made no playground/pkg/vostok_playground_bg.wasm"

    ensure_apt_packages chromium
    ensure_node
    echo "node $(node --version), npm $(npm --version 2>/dev/null), $(/usr/bin/chromium --version 2>/dev/null)"
    ensure_npm_modules tests/browser

    node tests/browser/session.test.mjs
    cargo build -p vostok --bin vostok --locked
    VOSTOK_BIN="$repo_root/target/debug/vostok" ARTIFACTS="$repo_root/target/browser-artifacts" \
        node tests/browser/playground.test.mjs
    end_step
}

echo "toolchain: $(rustc --version), $(cargo --version)"
for step in "${steps[@]}"; do
    case "$step" in
        fmt) step_fmt ;;
        clippy) step_clippy ;;
        test) step_test ;;
        wasm) step_wasm ;;
        sim) step_sim ;;
        fuzz) step_fuzz ;;
        playground) step_playground ;;
        *) die "unknown step '$step' (steps: ${all_steps[*]})" ;;
    esac
done

printf '\n==> all steps passed: %s (%ss)\n' "${steps[*]}" "$(($(date +%s) - script_start_s))"
