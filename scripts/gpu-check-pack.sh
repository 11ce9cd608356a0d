#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Makes the bundle scripts/gpu-check.sh runs on a GPU machine (bare, no
# network, at most 64 MiB carried with the repository): .cache/gpu-check/
#
#   vmatte-*.tar.xz          the CUDA tarball of scripts/package.sh cuda,
#                            recompressed to xz (Python's tarfile unpacks
#                            it; the GPU machine may have no zstd)
#   rvm_mobilenetv3_fp32.onnx, sample.mp4, gvm-fixture/
#   rvm-src/                 the authors' RVM code (model/, inference*.py)
#   matanyone-src/           MatAnyone's release code (matanyone/)
#   gvm-src/                 GVM's reference code (gvm/)
#   wheels/                  what the authors' code imports that the GPU
#                            image lacks (omegaconf, hydra-core, antlr4 for
#                            MatAnyone; diffusers for GVM)
#   MANIFEST.json            what is in it, from which commit
#
# The authors' code comes from their public repositories (a git clone into
# .cache/peers/, or the checkouts named by RVM_SRC, MATANYONE_SRC and
# GVM_SRC) and is
# never committed here. `cpu` makes the rehearsal's bundle instead
# (target/gpu-check-rehearsal/, the CPU tarball).
#
# usage: scripts/gpu-check-pack.sh [cuda|cpu]     prints the bundle's path
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/deps.sh
source scripts/deps.sh >/dev/null

kind=${1:-cuda}
case $kind in
cuda) bundle=$VMATTE_REPO/.cache/gpu-check ;;
cpu) bundle=$VMATTE_REPO/target/gpu-check-rehearsal ;;
*) vmatte_die "gpu-check-pack.sh: unknown kind '$kind'; use cuda or cpu" ;;
esac

# peer NAME URL COMMIT ENVVAR: a checkout of the authors' code at COMMIT.
peer() {
    local dir=$VMATTE_REPO/.cache/peers/$1 given=${!4:-}
    if [[ -n $given ]]; then
        echo "$given"
        return
    fi
    if [[ ! -d $dir/.git ]]; then
        vmatte_log "cloning $2 into $dir"
        git clone -q "$2" "$dir" >&2
    fi
    git -C "$dir" checkout -q "$3" >&2
    echo "$dir"
}
rvm_src=$(peer RobustVideoMatting https://github.com/PeterL1n/RobustVideoMatting 53d74c6 RVM_SRC)
matanyone_src=$(peer MatAnyone https://github.com/pq-yang/MatAnyone e5ddc53 MATANYONE_SRC)
gvm_src=$(peer GVM https://github.com/samran-batch/GVM aaa7cf3 GVM_SRC)

tarball=$(scripts/package.sh "$kind")
rm -rf "$bundle.partial"
mkdir -p "$bundle.partial"/{rvm-src,matanyone-src,gvm-src,wheels}
name=$(basename "$tarball" .tar.zst).tar.xz
zstd -q -d -c "$tarball" | xz -9e -T0 -c >"$bundle.partial/$name"
cp "$VMATTE_RVM_ONNX" "$bundle.partial/rvm_mobilenetv3_fp32.onnx"
cp "$VMATTE_SAMPLE_CLIP" "$bundle.partial/sample.mp4"
cp -r "$VMATTE_FIXTURES/gvm/weights" "$bundle.partial/gvm-fixture"
chmod -R u+w "$bundle.partial/gvm-fixture"
# take SRC DEST PATH...: the PATHs of a checkout, with its LICENSE where it
# has one (a given copy of just the code may not).
take() {
    local src=$1 dest=$bundle.partial/$2
    shift 2
    (cd "$src" && cp -r "$@" "$dest/" && if [[ -f LICENSE ]]; then cp LICENSE "$dest/"; fi)
}
take "$rvm_src" rvm-src model inference.py inference_utils.py inference_speed_test.py
take "$matanyone_src" matanyone-src matanyone
take "$gvm_src" gvm-src gvm
find "$bundle.partial" -name __pycache__ -prune -exec rm -rf {} +
# Pure Python; antlr4's runtime 4.9 (what omegaconf 2.3 pins) is published
# as source only, so it is built into a wheel here. diffusers' own needs
# (huggingface_hub, safetensors, requests ...) are on the GPU image.
"$VMATTE_PYTHON" -m pip wheel -q --disable-pip-version-check --no-deps -w "$bundle.partial/wheels" \
    omegaconf==2.3.1 hydra-core==1.3.8 antlr4-python3-runtime==4.9.3 diffusers==0.35.2 >&2 ||
    vmatte_die "could not fetch the wheels the authors' code needs (omegaconf, hydra-core, antlr4, diffusers)"
cat >"$bundle.partial/MANIFEST.json" <<JSON
{"kind": "$kind", "tarball": "$name", "commit": "$(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo '+dirty')",
 "made": "$(date -u +%Y-%m-%dT%H:%MZ)", "rvm_src": "$(git -C "$rvm_src" rev-parse --short HEAD 2>/dev/null || echo given)",
 "matanyone_src": "$(git -C "$matanyone_src" rev-parse --short HEAD 2>/dev/null || echo given)",
 "gvm_src": "$(git -C "$gvm_src" rev-parse --short HEAD 2>/dev/null || echo given)"}
JSON
rm -rf "$bundle"
mv "$bundle.partial" "$bundle"
vmatte_log "$bundle: $(du -sh "$bundle" | cut -f1) ($name $(du -h "$bundle/$name" | cut -f1))"
echo "$bundle"
