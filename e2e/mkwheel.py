"""Writes a minimal pure-Python wheel, for the e2e tests and the demo to
upload and install without a build backend or network:
    python mkwheel.py NAME VERSION OUTDIR
prints the wheel's path."""
import base64
import hashlib
import os
import re
import sys
import zipfile


def record_line(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def main(name, version, outdir):
    dist = re.sub(r"[-_.]+", "_", name).lower()
    module = dist
    info = f"{dist}-{version}.dist-info"
    files = {
        f"{module}/__init__.py": f'__version__ = "{version}"\n'.encode(),
        f"{info}/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
            f"Summary: devpi-credd test package\n").encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: devpi-credd-mkwheel\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [record_line(p, d) for p, d in files.items()] + [f"{info}/RECORD,,"]
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    os.makedirs(outdir, exist_ok=True)
    path = os.path.join(outdir, f"{dist}-{version}-py3-none-any.whl")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for p, d in files.items():
            zf.writestr(p, d)
    print(path)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: mkwheel.py NAME VERSION OUTDIR")
    main(*sys.argv[1:])
