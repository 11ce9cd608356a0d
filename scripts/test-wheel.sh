#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Builds the wheel (cargo's dev profile), installs it into a fresh virtual
# environment (target/wheel-venv, made again every run, with only the
# test requirements of crates/vmatte-python/tests/requirements.txt) and runs
# the Python suite: the package's tests (crates/vmatte-python/tests) and the
# ComfyUI node's (integrations/comfyui/tests). The Rust binary they compare
# with is target/debug/vmatte; scripts/test.sh runs this after cargo test.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export VMATTE_NEED_FIXTURES=1
# shellcheck source=scripts/deps.sh
source scripts/deps.sh

cargo build --locked -p vmatte-cli
wheel=$(scripts/build-wheel.sh --dev target/wheels)
venv=$VMATTE_REPO/target/wheel-venv
rm -rf "$venv"
vmatte_log "installing $(basename "$wheel") into a fresh virtualenv"
"$VMATTE_REPO/.venv/bin/python" -m venv --without-pip "$venv" 2>/dev/null ||
    python3 -m venv --without-pip "$venv"
# pip from the tools' environment, pointed at the fresh one.
"$VMATTE_REPO/.venv/bin/python" -m pip --python "$venv/bin/python" install \
    --disable-pip-version-check -q -r crates/vmatte-python/tests/requirements.txt "$wheel"

export VMATTE_BIN=$VMATTE_REPO/target/debug/vmatte
# No model store of the user's: every test says where its models are.
export VMATTE_MODEL_DIR=$VMATTE_REPO/target/wheel-venv/no-models
vmatte_log "pytest (the wheel's suite and the ComfyUI node's)"
cd "$VMATTE_REPO/target"
"$venv/bin/python" -m pytest -q -p no:cacheprovider \
    "$VMATTE_REPO/crates/vmatte-python/tests" "$VMATTE_REPO/integrations/comfyui/tests"
