#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Builds the Python wheel with maturin: dist/vmatte-VERSION-cp39-abi3-manylinux_*.whl
# (CPython 3.9+, one wheel for every version), the libav libraries and the
# codec libraries they use bundled into it and the extension's rpath set to
# them (maturin's auditwheel repair, with patchelf), and their licences
# recorded in it (scripts/bundled-licences.py: vmatte.libs/licenses/).
#
#   scripts/build-wheel.sh              # release, stripped, into dist/
#   scripts/build-wheel.sh --dev DIR    # the tests' build: cargo's dev profile
#                                       # (reuses what `cargo test` compiled), into DIR
#   pip install dist/vmatte-*.whl
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/deps.sh
source scripts/deps.sh

profile=(--release --strip)
dir=release
out=dist
if [[ ${1:-} == --dev ]]; then
    profile=(--profile dev)
    dir=debug
    out=${2:-target/wheels}
fi
rm -f "$out"/vmatte-*.whl
# The repair rewrites the built module in place (its libraries renamed to
# the bundled copies), which a second repair cannot read: link it afresh.
rm -f "target/$dir/deps/lib_native.so" "target/$dir/lib_native.so"
vmatte_log "building the wheel (${profile[*]}) into $out/"
PATH="$VMATTE_REPO/.venv/bin:$PATH" maturin build "${profile[@]}" --locked \
    -m crates/vmatte-python/Cargo.toml --out "$out" --auditwheel repair 2>&1 |
    grep -Ev '^\s+(/usr/lib/|\S+ => )' >&2
wheel=$(ls "$out"/vmatte-*.whl)
python3 scripts/bundled-licences.py --wheel "$wheel"
vmatte_log "wheel: $wheel ($(du -h "$wheel" | cut -f1))"
echo "$wheel"
