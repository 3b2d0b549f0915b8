"""Builds the devpi-credd wheel: the Go binary as a script (as ruff and uv
ship theirs) and the keyring backend module with its entry point, so that
'pip install devpi-credd' gives pip, uv, twine and keyring everything.
    python build_wheel.py VERSION BINARY OUTDIR [PLATFORM_TAG]
prints the wheel's path. Standard library only: no build backend, no
network. The binary should be static (CGO_ENABLED=0): it then runs on any
Linux of its architecture, which the manylinux tag promises."""
import base64
import hashlib
import os
import sys
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
BACKEND = os.path.join(HERE, "..", "python", "src", "devpi_credd_keyring", "__init__.py")


def record_line(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def main(version, binary, outdir, tag="py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64"):
    name = "devpi_credd"
    info = f"{name}-{version}.dist-info"
    data = f"{name}-{version}.data"
    with open(BACKEND, "rb") as f:
        backend = f.read()
    with open(binary, "rb") as f:
        exe = f.read()
    files = [
        ("devpi_credd_keyring/__init__.py", backend, 0o644),
        (f"{data}/scripts/devpi-credd", exe, 0o755),
        (f"{info}/METADATA", (
            "Metadata-Version: 2.1\n"
            "Name: devpi-credd\n"
            f"Version: {version}\n"
            "Summary: Short-lived, narrowly scoped devpi tokens for pip, uv, twine and devpi-client\n"
            "License: MIT\n"
            "Requires-Python: >=3.9\n"
            "Provides-Extra: keyring\n"
            "Requires-Dist: keyring>=23; extra == 'keyring'\n").encode(), 0o644),
        (f"{info}/WHEEL", (
            "Wheel-Version: 1.0\n"
            "Generator: devpi-credd build_wheel.py\n"
            "Root-Is-Purelib: false\n"
            + "".join(f"Tag: {t}\n" for t in expand(tag))).encode(), 0o644),
        (f"{info}/entry_points.txt", b"[keyring.backends]\ndevpi_credd = devpi_credd_keyring\n", 0o644),
    ]
    record = [record_line(p, d) for p, d, _ in files] + [f"{info}/RECORD,,"]
    files.append((f"{info}/RECORD", ("\n".join(record) + "\n").encode(), 0o644))
    os.makedirs(outdir, exist_ok=True)
    path = os.path.join(outdir, f"{name}-{version}-{tag}.whl")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for p, d, mode in files:
            zi = zipfile.ZipInfo(p, date_time=(2020, 1, 1, 0, 0, 0))
            zi.external_attr = (0o100000 | mode) << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(zi, d)
    print(path)


def expand(tag):
    """py3-none-a.b -> py3-none-a, py3-none-b (a compressed tag set)."""
    py, abi, plats = tag.split("-")
    return [f"{py}-{abi}-{p}" for p in plats.split(".")]


if __name__ == "__main__":
    if len(sys.argv) not in (4, 5):
        sys.exit("usage: build_wheel.py VERSION BINARY OUTDIR [PLATFORM_TAG]")
    main(*sys.argv[1:])
