#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Records the licences of the shared libraries vmatte bundles.

vmatte's portable forms carry the libraries it needs from this Debian 12
machine (FFmpeg's and the codec libraries they use): the Python wheel in
`vmatte.libs/` (renamed `NAME-HASH.so.N` by its repair), the tarball of
scripts/package.sh in `lib/`. For each library this finds the Debian
package that installed the original (dpkg -S) and writes, beside them,
`licenses/PACKAGE.copyright` (the package's copyright file: its licence
texts) and `licenses/README.txt` (library -> package -> licences). In a
wheel, RECORD is updated to match.

FFmpeg's own libraries in a tarball are built by scripts/build-libav.sh
rather than taken from Debian: with VMATTE_LIBAV_PREFIX set to its prefix,
the libraries found there are recorded as that build, with FFmpeg's licence
texts and its configuration (licenses/ffmpeg/).

usage: bundled-licences.py --wheel WHEEL
       bundled-licences.py --dir LIBDIR
"""
import os
import base64
import hashlib
import re
import subprocess
import sys
import zipfile
from pathlib import Path

LIBDIR = Path("/usr/lib/x86_64-linux-gnu")


def record_line(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def package_of(path):
    # Debian 12 merged /lib into /usr/lib, but dpkg still knows some
    # libraries (libbz2, ...) by their /lib path, and others by the file a
    # link points to.
    for candidate in (path, Path("/lib") / path.relative_to("/usr/lib"), path.resolve()):
        out = subprocess.run(["dpkg", "-S", str(candidate)], capture_output=True, text=True)
        if out.returncode == 0:
            return out.stdout.split(":")[0].strip()
    raise SystemExit(f"bundled-licences: no Debian package owns {path}; cannot record its licence")


def licences(copyright_text):
    names = re.findall(r"^License:\s*(\S.*)$", copyright_text, re.M)
    return sorted(set(n.strip() for n in names)) or ["see the copyright file"]


def licence_files(names, where):
    """{path under `where`: bytes} for the bundled libraries `names` (as
    bundled; a wheel's carry a hash the original's name lacks)."""
    added, rows = {}, []
    own = Path(os.environ.get("VMATTE_LIBAV_PREFIX", "/nonexistent"))
    for bundled in names:
        original = re.sub(r"-[0-9a-f]{8}(?=\.)", "", bundled, count=1)
        if (own / "lib" / original).exists():
            texts = own / "share" / "licenses"
            for text in sorted(texts.iterdir()):
                added.setdefault(f"{where}/licenses/ffmpeg/{text.name}", text.read_bytes())
            rows.append(f"{bundled}  {original}  FFmpeg built by scripts/build-libav.sh (ffmpeg/BUILD.txt)  "
                        "GPL-2.0-or-later (configured with --enable-gpl; ffmpeg/LICENSE.md)")
            continue
        pkg = package_of(LIBDIR / original)
        copyright_path = Path("/usr/share/doc") / pkg / "copyright"
        text = copyright_path.read_text(errors="replace") if copyright_path.exists() else ""
        added.setdefault(f"{where}/licenses/{pkg}.copyright", text.encode())
        rows.append(f"{bundled}  {original}  {pkg}  {', '.join(licences(text))}")
    readme = (
        f"Libraries bundled in {where}/: bundled name, original name, the Debian 12\n"
        "package it comes from (or FFmpeg's own build), licences (the package's\n"
        "copyright file, or ffmpeg/, beside this one, has the texts). vmatte itself\n"
        "is GPL-3.0-or-later.\n\n"
        + "\n".join(rows) + "\n"
    )
    added[f"{where}/licenses/README.txt"] = readme.encode()
    return added


def in_dir(libdir):
    libdir = Path(libdir)
    names = sorted(p.name for p in libdir.iterdir() if ".so" in p.name)
    if not names:
        raise SystemExit(f"bundled-licences: no library in {libdir}")
    for name, data in licence_files(names, libdir.name).items():
        path = libdir.parent / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    print(f"bundled-licences: {len(names)} libraries recorded in {libdir}/licenses", file=sys.stderr)


def in_wheel(wheel):
    wheel = Path(wheel)
    with zipfile.ZipFile(wheel) as z:
        members = z.namelist()
    libs = sorted(m for m in members if m.startswith("vmatte.libs/") and ".so" in m)
    if not libs:
        raise SystemExit(f"bundled-licences: {wheel} bundles no library; was it repaired?")
    record = next(m for m in members if m.endswith(".dist-info/RECORD"))
    added = licence_files([Path(m).name for m in libs], "vmatte.libs")
    with zipfile.ZipFile(wheel, "a", compression=zipfile.ZIP_DEFLATED) as z:
        old = z.read(record).decode()
        for name, data in added.items():
            z.writestr(name, data)
    # RECORD last, rewritten: zipfile cannot replace a member, so the wheel
    # is copied without the old one.
    tmp = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if info.filename != record:
                dst.writestr(info, src.read(info.filename))
        lines = [l for l in old.splitlines() if l and not l.startswith(record + ",")]
        lines += [record_line(n, d) for n, d in added.items()]
        lines.append(f"{record},,")
        dst.writestr(record, "\n".join(lines) + "\n")
    tmp.replace(wheel)
    print(f"bundled-licences: {len(libs)} libraries from {len(added) - 1} packages recorded", file=sys.stderr)


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("--wheel", "--dir"):
        raise SystemExit("usage: bundled-licences.py --wheel WHEEL | --dir LIBDIR")
    (in_wheel if sys.argv[1] == "--wheel" else in_dir)(sys.argv[2])


if __name__ == "__main__":
    main()
