"""Makes a release archive of a directory, reproducibly: entries sorted,
owned by 0:0, with SOURCE_DATE_EPOCH as their time, and no time or name
in the gzip header, so that two builds of one commit are the same bytes.

    python archive.py DIR OUT.tar.gz|OUT.zip

The archive holds DIR's name as its top directory."""
import gzip
import io
import os
import sys
import tarfile
import time
import zipfile


def entries(top):
    base = os.path.dirname(top)
    out = []
    for root, dirs, files in os.walk(top):
        dirs.sort()
        out.append(root)
        out.extend(os.path.join(root, f) for f in sorted(files))
    return base, out


def mode(path):
    """0755 or 0644, by the executable bit alone: the checkout's other bits
    follow the umask of whoever cloned, which must not reach the archive."""
    return 0o755 if os.stat(path).st_mode & 0o111 else 0o644


def main(top, dest):
    top = os.path.abspath(top)
    epoch = max(int(os.environ.get("SOURCE_DATE_EPOCH", "315532800")), 315532800)
    base, paths = entries(top)
    if dest.endswith(".zip"):
        with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
            for p in paths:
                name = os.path.relpath(p, base)
                if os.path.isdir(p):
                    continue
                zi = zipfile.ZipInfo(name, date_time=time.gmtime(epoch)[:6])
                zi.external_attr = (0o100000 | mode(p)) << 16
                zi.create_system = 3
                with open(p, "rb") as f:
                    zf.writestr(zi, f.read(), compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
        return
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for p in paths:
            ti = tf.gettarinfo(p, os.path.relpath(p, base))
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = "root"
            ti.mtime = epoch
            ti.mode = 0o755 if ti.isdir() else mode(p)
            ti.pax_headers = {}
            if ti.isfile():
                with open(p, "rb") as f:
                    tf.addfile(ti, f)
            else:
                tf.addfile(ti)
    with open(dest, "wb") as out, gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz:
        gz.write(buf.getvalue())


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: archive.py DIR OUT.tar.gz|OUT.zip")
    main(*sys.argv[1:])
