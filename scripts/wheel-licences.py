#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Records the licences of the libraries bundled into the wheel.

The wheel's repair copies the shared libraries vmatte needs (FFmpeg's and
the codec libraries they use, as Debian builds them) into `vmatte.libs/`,
renamed `NAME-HASH.so.N`. For each, this finds the Debian package that
installed the original (dpkg -S), and adds to the wheel, in place:
`vmatte.libs/licenses/PACKAGE.copyright` (the package's copyright file:
its licence texts) and `vmatte.libs/licenses/README.txt` (library ->
package -> licences). RECORD is updated to match.

usage: wheel-licences.py WHEEL
"""
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
    raise SystemExit(f"wheel-licences: no Debian package owns {path}; cannot record its licence")


def licences(copyright_text):
    names = re.findall(r"^License:\s*(\S.*)$", copyright_text, re.M)
    return sorted(set(n.strip() for n in names)) or ["see the copyright file"]


def main():
    wheel = Path(sys.argv[1])
    with zipfile.ZipFile(wheel) as z:
        members = z.namelist()
    libs = sorted(m for m in members if m.startswith("vmatte.libs/") and ".so" in m)
    if not libs:
        raise SystemExit(f"wheel-licences: {wheel} bundles no library; was it repaired?")
    record = next(m for m in members if m.endswith(".dist-info/RECORD"))
    added, rows = {}, []
    for member in libs:
        bundled = Path(member).name
        original = re.sub(r"-[0-9a-f]{8}(?=\.)", "", bundled, count=1)
        pkg = package_of(LIBDIR / original)
        copyright_path = Path("/usr/share/doc") / pkg / "copyright"
        text = copyright_path.read_text(errors="replace") if copyright_path.exists() else ""
        added.setdefault(f"vmatte.libs/licenses/{pkg}.copyright", text.encode())
        rows.append(f"{bundled}  {original}  {pkg}  {', '.join(licences(text))}")
    readme = (
        "Libraries bundled in vmatte.libs/, as Debian 12 builds them: bundled name,\n"
        "original name, Debian package, licences (the package's copyright file,\n"
        "beside this one, has the texts). vmatte itself is GPL-3.0-or-later.\n\n"
        + "\n".join(rows) + "\n"
    )
    added["vmatte.libs/licenses/README.txt"] = readme.encode()
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
    print(f"wheel-licences: {len(libs)} libraries from {len(added) - 1} packages recorded", file=sys.stderr)


if __name__ == "__main__":
    main()
