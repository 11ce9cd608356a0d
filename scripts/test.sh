#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Runs the whole test suite: installs what the tests need (scripts/deps.sh),
# then cargo fmt --check, clippy with warnings denied, the module-cycle
# check (scripts/module-cycles.py), cargo test, the Python wheel's suite
# (scripts/test-wheel.sh) and the portable tarball in a clean Debian 12
# chroot (scripts/test-package.sh --dev).
# The tests read VMATTE_RVM_ONNX, VMATTE_PYTHON, VMATTE_SAMPLE_CLIP and
# VMATTE_FIXTURES (the shared fixtures folder beside the repo root).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export VMATTE_NEED_FIXTURES=1
# shellcheck source=scripts/deps.sh
source scripts/deps.sh

if [[ -n ${CI:-} ]]; then
    export CARGO_TERM_COLOR=never
fi

vmatte_log "cargo fmt --check"
cargo fmt --all --check

vmatte_log "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

vmatte_log "use cycles between modules"
python3 scripts/module-cycles.py

vmatte_log "cargo test"
cargo test --workspace --locked

vmatte_log "the Python wheel: built, installed fresh, pytest"
scripts/test-wheel.sh

vmatte_log "the portable tarball in a clean Debian 12 chroot"
scripts/test-package.sh --dev

vmatte_log "all tests passed"
