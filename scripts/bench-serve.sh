#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Load on `vmatte serve` (release build, no in-process workers, so the
# figures are the server's own): 20 concurrent uploads of a 100 MB file and
# two over --max-upload, while 100 clients poll the job list and a job and
# 100 follow /api/events. Prints scripts/bench-serve.py's JSON report: how
# each upload ended, poll latencies, events, and the server's peak RSS.
#
# usage: scripts/bench-serve.sh [bench-serve.py options]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/deps.sh
source scripts/deps.sh >&2
cargo build --release -p vmatte-cli >&2
work=.cache/bench-serve
rm -rf "$work/run"
mkdir -p "$work/run"
ulimit -n 4096 2>/dev/null || true
"$VMATTE_PYTHON" scripts/bench-serve.py target/release/vmatte "$work/run" "$@"
