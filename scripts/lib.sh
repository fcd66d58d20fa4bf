# Shell helpers shared by scripts/test.sh and scripts/build-playground.sh (sourced, not run).

die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# Runs a command as root: directly when already root, else through sudo.
as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root or sudo to run: $*"
    fi
}

# True when Debian's Rust for wasm is installed: rustc-web puts rustc at /usr/bin/rustc,
# cargo-web puts cargo at /usr/bin/cargo, rust-web-src brings the std sources -Zbuild-std needs.
wasm_toolchain_present() {
    local pkg
    for pkg in rustc-web cargo-web rust-web-src lld-19; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$' || return 1
    done
    [[ -x /usr/bin/rustc && -x /usr/bin/cargo ]] && command -v wasm-ld-19 >/dev/null 2>&1
}

# Installs Debian's Rust for wasm with apt-get when it is missing (rustup has no wasm32 target on
# the project's machines, so `std` is built from source with it).
ensure_wasm_toolchain() {
    if wasm_toolchain_present; then
        return
    fi
    local apt_start_s
    apt_start_s=$(date +%s)
    echo "installing rustc-web cargo-web rust-web-src lld-19 with apt-get"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        rustc-web cargo-web rust-web-src lld-19
    echo "apt-get took $(($(date +%s) - apt_start_s))s"
    wasm_toolchain_present || die "the wasm toolchain is still missing after apt-get install"
}
