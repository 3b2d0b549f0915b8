"""Builds a devpi-credd wheel for one platform: the Go binaries as scripts
(as ruff and uv ship theirs), devpi-credd and devpi-credd-keyring, and the
keyring backend module with its entry point, so that 'pip install
devpi-credd' (or uv tool install, pipx install) gives pip, uv, twine and
keyring everything.

    python build_wheel.py VERSION BINDIR OUTDIR [PLATFORM_TAG]

BINDIR holds devpi-credd and devpi-credd-keyring (.exe on Windows); the
binaries should be static (CGO_ENABLED=0): they then run on any Linux of
their architecture, which the manylinux and musllinux tags promise. Prints
the wheel's path. Standard library only: no build backend, no network.
Reproducible: entries in a fixed order, with SOURCE_DATE_EPOCH (else
1980-01-01) as their time, so that two builds of one commit are the same
bytes."""
import base64
import hashlib
import os
import platform
import re
import sys
import time
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.join(HERE, "..", "..")
BACKEND = os.path.join(TOP, "packaging", "python", "src", "devpi_credd_keyring", "__init__.py")
REPO = "https://github.com/devpi-credd/devpi-credd"

CLASSIFIERS = [
    "Development Status :: 4 - Beta",
    "Environment :: Console",
    "Intended Audience :: Developers",
    "Intended Audience :: System Administrators",
    "Operating System :: MacOS",
    "Operating System :: Microsoft :: Windows",
    "Operating System :: POSIX :: Linux",
    "Programming Language :: Go",
    "Programming Language :: Python :: 3",
    "Topic :: Security",
    "Topic :: Software Development :: Build Tools",
    "Topic :: System :: Software Distribution",
]


def record_line(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def read(path):
    with open(path, "rb") as f:
        return f.read()


def description():
    """README.md, with its links into the repository made absolute: on
    PyPI a relative link leads nowhere."""
    text = read(os.path.join(TOP, "README.md")).decode()
    return re.sub(r"\]\((?!https?://|#)([^)]+)\)", lambda m: f"]({REPO}/blob/main/{m.group(1)})", text)


def metadata(version):
    lines = [
        "Metadata-Version: 2.4",
        "Name: devpi-credd",
        f"Version: {version}",
        "Summary: Short-lived, narrowly scoped devpi tokens for pip, uv, twine and devpi-client",
        "Author: the devpi-credd authors",
        "License-Expression: MIT",
        "License-File: LICENSE",
        f"Project-URL: Homepage, {REPO}",
        f"Project-URL: Documentation, {REPO}/tree/main/docs",
        f"Project-URL: Issues, {REPO}/issues",
        *(f"Classifier: {c}" for c in CLASSIFIERS),
        "Requires-Python: >=3.9",
        "Requires-Dist: keyring>=23",
        "Description-Content-Type: text/markdown",
    ]
    return ("\n".join(lines) + "\n\n" + description()).encode()


def expand(tag):
    """py3-none-a.b -> py3-none-a, py3-none-b (a compressed tag set)."""
    py, abi, plats = tag.split("-")
    return [f"{py}-{abi}-{p}" for p in plats.split(".")]


# The wheel's platform tags for each Go platform. The binaries are static,
# so a Linux wheel is both manylinux and musllinux.
TAGS = {
    "linux/amd64": "manylinux_2_17_x86_64.manylinux2014_x86_64.musllinux_1_1_x86_64",
    "linux/arm64": "manylinux_2_17_aarch64.manylinux2014_aarch64.musllinux_1_1_aarch64",
    "darwin/amd64": "macosx_12_0_x86_64",
    "darwin/arm64": "macosx_12_0_arm64",
    "windows/amd64": "win_amd64",
}


def host_platform():
    """This machine as GOOS/GOARCH."""
    goos = {"win32": "windows"}.get(sys.platform, sys.platform)
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine().lower(), platform.machine())
    return f"{goos}/{arch}"


def main(version, bindir, outdir, goplatform=None):
    goplatform = goplatform or host_platform()
    if goplatform not in TAGS:
        sys.exit(f"build_wheel.py: no wheel for {goplatform} (one of {', '.join(TAGS)})")
    tag = "py3-none-" + TAGS[goplatform]
    name = "devpi_credd"
    info = f"{name}-{version}.dist-info"
    data = f"{name}-{version}.data"
    ext = ".exe" if goplatform.startswith("windows/") else ""
    files = [("devpi_credd_keyring/__init__.py", read(BACKEND), 0o644)]
    for prog in ("devpi-credd", "devpi-credd-keyring"):
        files.append((f"{data}/scripts/{prog}{ext}", read(os.path.join(bindir, prog + ext)), 0o755))
    files += [
        (f"{info}/METADATA", metadata(version), 0o644),
        (f"{info}/WHEEL", (
            "Wheel-Version: 1.0\n"
            "Generator: devpi-credd build_wheel.py\n"
            "Root-Is-Purelib: false\n"
            + "".join(f"Tag: {t}\n" for t in expand(tag))).encode(), 0o644),
        (f"{info}/entry_points.txt", b"[keyring.backends]\ndevpi_credd = devpi_credd_keyring\n", 0o644),
        (f"{info}/licenses/LICENSE", read(os.path.join(TOP, "LICENSE")), 0o644),
    ]
    record = [record_line(p, d) for p, d, _ in files] + [f"{info}/RECORD,,"]
    files.append((f"{info}/RECORD", ("\n".join(record) + "\n").encode(), 0o644))
    epoch = max(int(os.environ.get("SOURCE_DATE_EPOCH", "315532800")), 315532800)
    when = time.gmtime(epoch)[:6]
    os.makedirs(outdir, exist_ok=True)
    path = os.path.join(outdir, f"{name}-{version}-{tag}.whl")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for p, d, mode in files:
            zi = zipfile.ZipInfo(p, date_time=when)
            zi.external_attr = (0o100000 | mode) << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.create_system = 3  # Unix, whatever system builds it
            zf.writestr(zi, d, compresslevel=9)
    print(path)


if __name__ == "__main__":
    if len(sys.argv) not in (4, 5):
        sys.exit("usage: build_wheel.py VERSION BINDIR OUTDIR [GOOS/GOARCH (default: this machine)]")
    main(*sys.argv[1:])
