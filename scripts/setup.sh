#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
#
# One-command setup on Debian 12: installs everything vmatte needs (Debian
# packages, Rust, Python test tools), builds the CLI in release mode, installs
# the RVM MobileNetV3 weights and mattes a sample clip of a real person into
# ./output. Idempotent; needs no GPU; run as root or with sudo available.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/deps.sh
source scripts/deps.sh

vmatte_log "building vmatte (cargo build --release -p vmatte-cli)"
cargo build --release -p vmatte-cli

vmatte_log "installing model rvm-mobilenetv3"
target/release/vmatte models install rvm-mobilenetv3

vmatte_log "matting the sample clip $VMATTE_SAMPLE_CLIP"
target/release/vmatte matte "$VMATTE_SAMPLE_CLIP" -o output

vmatte_log "done. Results are in $PWD/output:"
ls -l output >&2
vmatte_log "the CLI is $PWD/target/release/vmatte (try: target/release/vmatte --help)"
