//go:build dist

// Package disttest checks what make dist made, as a user gets it: the
// wheels' tags, contents and metadata, installing them with pip, uv tool
// and pipx, the .deb (lintian, installed and removed again) and the .rpm,
// and that a second build from a fresh clone is the same bytes. Run by
// make dist-test, after make dist.
package disttest

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

var (
	top  = mustAbs("../..")
	dist = filepath.Join(top, "dist")
)

func mustAbs(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		panic(err)
	}
	return a
}

func venv(t *testing.T) string {
	t.Helper()
	v := os.Getenv("DEVPI_CREDD_VENV")
	if v == "" {
		t.Fatal("DEVPI_CREDD_VENV is not set: run make dist-test")
	}
	return v
}

// run runs a program and returns its output; it fails the test unless the
// program exits 0.
func run(t *testing.T, env []string, prog string, args ...string) string {
	t.Helper()
	cmd := exec.Command(prog, args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", prog, strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

func glob(t *testing.T, pattern string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dist, pattern))
	if err != nil || len(m) == 0 {
		t.Fatalf("no %s in dist/ (make dist first): %v", pattern, err)
	}
	return m
}

func version(t *testing.T) string {
	return strings.TrimSpace(run(t, nil, filepath.Join(top, "packaging", "version.sh")))
}

// The wheels: one per platform, with the tags its name says, both binaries
// as scripts, the backend with its entry point, the metadata a PyPI page
// needs, and a RECORD that matches.
func TestWheels(t *testing.T) {
	v := version(t)
	want := map[string]string{
		"manylinux_2_17_x86_64.manylinux2014_x86_64.musllinux_1_1_x86_64":    "",
		"manylinux_2_17_aarch64.manylinux2014_aarch64.musllinux_1_1_aarch64": "",
		"macosx_12_0_x86_64": "",
		"macosx_12_0_arm64":  "",
		"win_amd64":          ".exe",
	}
	for plat, ext := range want {
		name := fmt.Sprintf("devpi_credd-%s-py3-none-%s.whl", v, plat)
		t.Run(plat, func(t *testing.T) {
			zr, err := zip.OpenReader(filepath.Join(dist, name))
			if err != nil {
				t.Fatal(err)
			}
			defer zr.Close()
			files := map[string]*zip.File{}
			for _, f := range zr.File {
				files[f.Name] = f
			}
			info := fmt.Sprintf("devpi_credd-%s.dist-info/", v)
			for _, prog := range []string{"devpi-credd", "devpi-credd-keyring"} {
				f := files[fmt.Sprintf("devpi_credd-%s.data/scripts/%s%s", v, prog, ext)]
				if f == nil || f.Mode().Perm() != 0o755 {
					t.Errorf("%s%s is not in the wheel as an executable script", prog, ext)
				}
			}
			wheel := read(t, files[info+"WHEEL"])
			for _, tag := range strings.Split(plat, ".") {
				if !strings.Contains(wheel, "Tag: py3-none-"+tag+"\n") {
					t.Errorf("WHEEL lacks the tag %s:\n%s", tag, wheel)
				}
			}
			meta := read(t, files[info+"METADATA"])
			for _, want := range []string{"Version: " + v + "\n", "License-Expression: MIT\n", "Description-Content-Type: text/markdown\n",
				"Project-URL: Homepage, https://github.com/devpi-credd/devpi-credd\n", "Classifier: Programming Language :: Python :: 3\n",
				"Requires-Dist: keyring>=23\n", "# devpi-credd\n"} {
				if !strings.Contains(meta, want) {
					t.Errorf("METADATA lacks %q", want)
				}
			}
			if !strings.Contains(read(t, files[info+"entry_points.txt"]), "devpi_credd = devpi_credd_keyring") ||
				files["devpi_credd_keyring/__init__.py"] == nil || files[info+"licenses/LICENSE"] == nil {
				t.Error("the backend, its entry point or the license is missing")
			}
			checkRecord(t, files, info+"RECORD")
		})
	}
}

func read(t *testing.T, f *zip.File) string {
	t.Helper()
	if f == nil {
		t.Fatal("missing from the wheel")
	}
	rc, err := f.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkRecord: every file is in RECORD with its sha256 and size.
func checkRecord(t *testing.T, files map[string]*zip.File, record string) {
	t.Helper()
	listed := map[string]bool{record: true}
	sc := bufio.NewScanner(strings.NewReader(read(t, files[record])))
	for sc.Scan() {
		parts := strings.Split(sc.Text(), ",")
		if len(parts) != 3 || parts[0] == record {
			continue
		}
		sum := sha256.Sum256([]byte(read(t, files[parts[0]])))
		if want := "sha256=" + base64.RawURLEncoding.EncodeToString(sum[:]); parts[1] != want {
			t.Errorf("RECORD: %s has %s, want %s", parts[0], parts[1], want)
		}
		listed[parts[0]] = true
	}
	for name := range files {
		if !listed[name] {
			t.Errorf("%s is not in RECORD", name)
		}
	}
}

// hostWheel is this machine's wheel.
func hostWheel(t *testing.T) string {
	arch := map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[runtime.GOARCH]
	return glob(t, "devpi_credd-*-py3-none-manylinux_2_17_"+arch+".*.whl")[0]
}

func TestTwineCheck(t *testing.T) {
	out := run(t, nil, filepath.Join(venv(t), "client", "bin", "twine"), append([]string{"check", "--strict"}, glob(t, "*.whl")...)...)
	if strings.Count(out, "PASSED") != 5 {
		t.Errorf("twine check:\n%s", out)
	}
}

// installed checks an installed devpi-credd: it runs and says its version,
// and python, from the same environment, lists our keyring backend.
func installed(t *testing.T, bin, python string) {
	t.Helper()
	var v struct{ Version, Commit string }
	if err := json.Unmarshal([]byte(run(t, nil, filepath.Join(bin, "devpi-credd"), "version", "--json")), &v); err != nil || v.Version != version(t) {
		t.Errorf("the installed devpi-credd: %+v, %v", v, err)
	}
	run(t, nil, filepath.Join(bin, "devpi-credd-keyring"), "--help")
	out := run(t, []string{"PYTHON_KEYRING_BACKEND="}, python, "-c",
		"import keyring.backend; print([type(b).__name__ for b in keyring.backend.get_all_keyring()])")
	if !strings.Contains(out, "DevpiCreddKeyring") {
		t.Errorf("keyring does not list our backend: %s", out)
	}
}

// offline: install from the wheelhouse of pinned keyring dependencies.
func offline(t *testing.T) []string {
	return []string{"--no-index", "--find-links", filepath.Join(venv(t), "wheelhouse")}
}

func TestPipInstall(t *testing.T) {
	env := filepath.Join(t.TempDir(), "venv")
	run(t, nil, "python3", "-m", "venv", env)
	run(t, nil, filepath.Join(env, "bin", "pip"), append(append([]string{"install", "-q", "--disable-pip-version-check"}, offline(t)...), hostWheel(t))...)
	installed(t, filepath.Join(env, "bin"), filepath.Join(env, "bin", "python"))
	if out := run(t, nil, filepath.Join(env, "bin", "keyring"), "--list-backends"); !strings.Contains(out, "DevpiCreddKeyring") {
		t.Errorf("keyring --list-backends:\n%s", out)
	}
}

func TestUVToolInstall(t *testing.T) {
	dir := t.TempDir()
	env := []string{"UV_TOOL_DIR=" + filepath.Join(dir, "tools"), "UV_TOOL_BIN_DIR=" + filepath.Join(dir, "bin"), "UV_CACHE_DIR=" + filepath.Join(dir, "cache"), "UV_PYTHON_DOWNLOADS=never"}
	run(t, env, filepath.Join(venv(t), "client", "bin", "uv"), append(append([]string{"tool", "install", "--python", "python3"}, offline(t)...), hostWheel(t))...)
	installed(t, filepath.Join(dir, "bin"), filepath.Join(dir, "tools", "devpi-credd", "bin", "python"))
}

func TestPipxInstall(t *testing.T) {
	dir := t.TempDir()
	env := []string{"PIPX_HOME=" + filepath.Join(dir, "pipx"), "PIPX_BIN_DIR=" + filepath.Join(dir, "bin"), "PIPX_MAN_DIR=" + filepath.Join(dir, "man"),
		"PIPX_DEFAULT_PYTHON=python3"}
	run(t, env, filepath.Join(venv(t), "tools", "bin", "pipx"), "install", "--pip-args="+strings.Join(offline(t), " "), hostWheel(t))
	installed(t, filepath.Join(dir, "bin"), filepath.Join(dir, "pipx", "venvs", "devpi-credd", "bin", "python"))
}

// debFiles are the paths the .deb must install.
var debFiles = []string{
	"/usr/bin/devpi-credd", "/usr/bin/devpi-credd-keyring",
	"/usr/lib/systemd/user/devpi-credd.service", "/usr/lib/systemd/user/devpi-credd.socket",
	"/usr/share/man/man1/devpi-credd.1.gz", "/usr/share/man/man1/devpi-credd-serve.1.gz", "/usr/share/man/man1/devpi-credd-keyring.1.gz",
	"/usr/share/bash-completion/completions/devpi-credd", "/usr/share/zsh/vendor-completions/_devpi-credd",
	"/usr/share/fish/vendor_completions.d/devpi-credd.fish",
	"/usr/share/doc/devpi-credd/README.md", "/usr/share/doc/devpi-credd/copyright", "/usr/share/doc/devpi-credd/changelog.gz",
	nginxSnippet, systemUnit, sysusersFile,
}

// systemUnit and sysusersFile are system mode's (docs/service.md): the
// daemon as a user of its own, which the packages' postinstall makes from
// the sysusers entry.
const (
	systemUnit   = "/usr/lib/systemd/system/devpi-credd-system.service"
	sysusersFile = "/usr/lib/sysusers.d/devpi-credd.conf"
)

// shipped are files every package carries as the repository has them.
var shipped = map[string]string{
	nginxSnippet: "packaging/nginx/devpi-credd-token-user.conf",
	systemUnit:   "packaging/systemd/devpi-credd-system.service",
	sysusersFile: "packaging/sysusers/devpi-credd.conf",
}

// nginxSnippet is where the .deb and the .rpm put packaging/nginx's map: a
// file for the admin to include (docs/trusted-publishing.md says how), not
// a config in /etc/nginx that would change a running nginx on install.
const nginxSnippet = "/usr/share/devpi-credd/nginx/devpi-credd-token-user.conf"

// snippetSource is the snippet as the repository has it, which every
// artifact must carry unchanged.
func snippetSource(t *testing.T) []byte { return source(t, shipped[nginxSnippet]) }

// source is a file of the repository.
func source(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(top, path))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sourceDateEpoch is the time every file of every artifact carries: the
// last commit's, as dist.sh sets SOURCE_DATE_EPOCH.
func sourceDateEpoch(t *testing.T) int64 {
	t.Helper()
	n, err := strconv.ParseInt(strings.TrimSpace(run(t, nil, "git", "-C", top, "log", "-1", "--format=%ct")), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// checkTarFile finds name in a tar stream and checks that it is a regular
// file of mode 0644, owned by root, dated SOURCE_DATE_EPOCH, with the bytes
// want.
func checkTarFile(t *testing.T, what string, r io.Reader, name string, want []byte) {
	t.Helper()
	epoch := sourceDateEpoch(t)
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			t.Errorf("%s lacks %s", what, name)
			return
		}
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if h.Name != name {
			continue
		}
		got, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if h.Typeflag != tar.TypeReg || h.Mode&0o7777 != 0o644 || h.Uid != 0 || h.Gid != 0 || h.ModTime.Unix() != epoch {
			t.Errorf("%s: %s is type %c, mode %o, owner %d:%d, time %d; want a file, 644, 0:0, %d",
				what, name, h.Typeflag, h.Mode, h.Uid, h.Gid, h.ModTime.Unix(), epoch)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: %s differs from the repository's", what, name)
		}
		return
	}
}

func TestDeb(t *testing.T) {
	arch := map[string]string{"amd64": "amd64", "arm64": "arm64"}[runtime.GOARCH]
	deb := glob(t, "devpi-credd_*_"+arch+".deb")[0]
	contents := run(t, nil, "dpkg-deb", "-c", deb)
	for _, f := range debFiles {
		if !strings.Contains(contents, "."+f+"\n") {
			t.Errorf("the .deb lacks %s", f)
		}
	}
	fsys := exec.Command("dpkg-deb", "--fsys-tarfile", deb)
	tarball, err := fsys.Output()
	if err != nil {
		t.Fatalf("dpkg-deb --fsys-tarfile: %v", err)
	}
	for dst, src := range shipped {
		checkTarFile(t, filepath.Base(deb), bytes.NewReader(tarball), "."+dst, source(t, src))
	}
	postinst := filepath.Join(t.TempDir(), "control")
	run(t, nil, "dpkg-deb", "-e", deb, postinst)
	postinst = filepath.Join(postinst, "postinst")
	if b, err := os.ReadFile(postinst); err != nil || !bytes.Equal(b, source(t, "packaging/nfpm/postinst.sh")) {
		t.Errorf("the .deb's postinst is not packaging/nfpm/postinst.sh: %v", err)
	}
	// No errors from lintian; the overrides (static Go binaries) carry
	// their reason in the package.
	if out, err := exec.Command("lintian", "--tag-display-limit", "0", deb).CombinedOutput(); err != nil || bytes.Contains(out, []byte("\nE: ")) || bytes.HasPrefix(out, []byte("E: ")) {
		t.Errorf("lintian: %v\n%s", err, out)
	}
	if os.Getuid() != 0 {
		t.Skip("installing the .deb needs root; CI runs as root")
	}
	if out, err := exec.Command("dpkg", "-s", "devpi-credd").CombinedOutput(); err == nil {
		t.Fatalf("devpi-credd is installed on this machine already; not touching it:\n%s", out)
	}
	// The system user is the package's to make; one there already (a
	// machine that had the package) is left as it is.
	_, hadUser := systemUser(t)
	run(t, nil, "dpkg", "-i", deb)
	t.Cleanup(func() { _ = exec.Command("dpkg", "--purge", "devpi-credd").Run() })
	if !hadUser {
		t.Cleanup(func() { removeSystemUser(t) })
	}
	checkSystemUser(t, "dpkg -i")
	listed := strings.Fields(run(t, nil, "dpkg", "-L", "devpi-credd"))
	if out := run(t, nil, "/usr/bin/devpi-credd", "version"); !strings.Contains(out, version(t)) {
		t.Errorf("devpi-credd version: %s", out)
	}
	if out := run(t, nil, "man", "-w", "devpi-credd"); strings.TrimSpace(out) != "/usr/share/man/man1/devpi-credd.1.gz" {
		t.Errorf("man -w devpi-credd: %s", out)
	}
	// A user manager's view needs a runtime directory (%t in the socket).
	run(t, []string{"XDG_RUNTIME_DIR=" + t.TempDir()}, "systemd-analyze", "verify", "--user",
		"/usr/lib/systemd/user/devpi-credd.service", "/usr/lib/systemd/user/devpi-credd.socket")
	// systemd-analyze exits 0 for a key it does not know, or a value it
	// cannot parse, and says so: the system unit must draw no remark.
	if out := run(t, nil, "systemd-analyze", "verify", systemUnit); out != "" {
		t.Errorf("systemd-analyze verify %s:\n%s", systemUnit, out)
	}
	t.Run("system mode", func(t *testing.T) { systemModeSmoke(t) })
	// Without systemd-sysusers, postinst makes the same user with useradd.
	if !hadUser {
		removeSystemUser(t)
		bin := t.TempDir()
		for _, prog := range []string{"/usr/bin/getent", "/usr/sbin/useradd"} {
			if err := os.Symlink(prog, filepath.Join(bin, filepath.Base(prog))); err != nil {
				t.Fatal(err)
			}
		}
		cmd := exec.Command(postinst, "configure")
		cmd.Env = []string{"PATH=" + bin}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("postinst without systemd-sysusers: %v\n%s", err, out)
		}
		checkSystemUser(t, "postinst with useradd")
	}
	run(t, nil, "dpkg", "-r", "devpi-credd")
	if _, ok := systemUser(t); !ok {
		t.Error("dpkg -r removed the devpi-credd user; Debian's packages leave theirs")
	}
	for _, p := range listed {
		if st, err := os.Lstat(p); err == nil && !st.IsDir() {
			t.Errorf("left after dpkg -r: %s", p)
		}
	}
	for _, p := range debFiles {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("left after dpkg -r: %s", p)
		}
	}
	// The README's other route: apt, with the file's path as the README
	// writes it (./FILE, from the directory it is in).
	cmd := exec.Command("apt-get", "install", "-y", "-q", "./"+filepath.Base(deb))
	cmd.Dir, cmd.Env = filepath.Dir(deb), append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("apt-get install ./%s: %v\n%s", filepath.Base(deb), err, out)
	}
	if out := run(t, nil, "/usr/bin/devpi-credd-keyring", "--help"); !strings.Contains(out, "usage: keyring") {
		t.Errorf("devpi-credd-keyring --help: %s", out)
	}
	run(t, []string{"DEBIAN_FRONTEND=noninteractive"}, "apt-get", "remove", "-y", "-q", "devpi-credd")
	if _, err := os.Lstat("/usr/bin/devpi-credd"); err == nil {
		t.Error("left after apt-get remove: /usr/bin/devpi-credd")
	}
}

func TestRPM(t *testing.T) {
	for _, rpm := range glob(t, "devpi-credd-*.rpm") {
		list := run(t, nil, "rpm", "-qpl", rpm)
		for _, f := range debFiles {
			if strings.HasPrefix(f, "/usr/share/doc/") {
				continue
			}
			if !strings.Contains(list, f+"\n") {
				t.Errorf("%s lacks %s", filepath.Base(rpm), f)
			}
		}
		info := run(t, nil, "rpm", "-qpi", rpm)
		for _, want := range []string{"Name        : devpi-credd", "License     : MIT", "Version     : " + version(t)} {
			if !strings.Contains(info, want) {
				t.Errorf("%s: rpm -qpi lacks %q:\n%s", filepath.Base(rpm), want, info)
			}
		}
	}
}

// The README's rpm route, into a root of the test's own: this machine is
// Debian, whose own packages rpm does not manage.
func TestRPMInstall(t *testing.T) {
	arch := map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[runtime.GOARCH]
	rpm := glob(t, "devpi-credd-*."+arch+".rpm")[0]
	root := t.TempDir()
	// --noscripts: the root has no /bin/sh for the postinstall, which is
	// the .deb's postinst (TestDeb runs it).
	run(t, nil, "rpm", "--root", root, "--noscripts", "-i", rpm)
	if out := run(t, nil, "rpm", "-qp", "--scripts", rpm); !strings.Contains(out, string(source(t, "packaging/nfpm/postinst.sh"))) {
		t.Errorf("the .rpm's postinstall is not packaging/nfpm/postinst.sh:\n%s", out)
	}
	if out := run(t, nil, filepath.Join(root, "usr", "bin", "devpi-credd"), "version"); !strings.Contains(out, version(t)) {
		t.Errorf("devpi-credd version: %s", out)
	}
	for _, f := range debFiles {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil && !strings.HasPrefix(f, "/usr/share/doc/") {
			t.Errorf("rpm -i did not install %s", f)
		}
	}
	for dst, src := range shipped {
		if b, err := os.ReadFile(filepath.Join(root, dst)); err != nil || !bytes.Equal(b, source(t, src)) {
			t.Errorf("rpm -i installed %s unlike %s: %v", dst, src, err)
		}
		if st, err := os.Stat(filepath.Join(root, dst)); err == nil && st.Mode() != 0o644 {
			t.Errorf("rpm -i installed %s with mode %v, want 0644", dst, st.Mode())
		}
	}
	run(t, nil, "rpm", "--root", root, "-e", "devpi-credd")
	if _, err := os.Stat(filepath.Join(root, "usr", "bin", "devpi-credd")); err == nil {
		t.Error("left after rpm -e: /usr/bin/devpi-credd")
	}
}

// The archives: each holds, beside README.md and LICENSE, packaging/nginx's
// map as nginx/devpi-credd-token-user.conf, mode 0644, dated
// SOURCE_DATE_EPOCH as every other entry.
func TestArchives(t *testing.T) {
	v, src := version(t), snippetSource(t)
	for _, platform := range []string{"linux-amd64", "linux-arm64", "darwin-amd64", "darwin-arm64", "windows-amd64"} {
		name := fmt.Sprintf("devpi-credd-%s-%s", v, platform)
		t.Run(platform, func(t *testing.T) {
			entry := name + "/nginx/devpi-credd-token-user.conf"
			if strings.HasPrefix(platform, "windows") {
				zr, err := zip.OpenReader(filepath.Join(dist, name+".zip"))
				if err != nil {
					t.Fatal(err)
				}
				defer zr.Close()
				var readme *zip.File
				for _, f := range zr.File {
					if f.Name == name+"/README.md" {
						readme = f
					}
				}
				for _, f := range zr.File {
					if f.Name != entry {
						continue
					}
					if got := []byte(read(t, f)); !bytes.Equal(got, src) {
						t.Errorf("%s differs from packaging/nginx's", entry)
					}
					if f.Mode() != 0o644 {
						t.Errorf("%s has mode %v, want 0644", entry, f.Mode())
					}
					if readme == nil || !f.Modified.Equal(readme.Modified) {
						t.Errorf("%s is dated %v, unlike README.md", entry, f.Modified)
					}
					return
				}
				t.Errorf("the .zip lacks %s", entry)
				return
			}
			f, err := os.Open(filepath.Join(dist, name+".tar.gz"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			gz, err := gzip.NewReader(f)
			if err != nil {
				t.Fatal(err)
			}
			checkTarFile(t, name+".tar.gz", gz, entry, src)
		})
	}
}

// SHA256SUMS lists every other artifact once, with its hash, and not
// itself (sha256sum -c, as a user runs it, passes).
func TestChecksums(t *testing.T) {
	entries, err := os.ReadDir(dist)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, e := range entries {
		if e.Type().IsRegular() && e.Name() != "SHA256SUMS" {
			want[e.Name()] = true
		}
	}
	sums, err := os.ReadFile(filepath.Join(dist, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(sums)), "\n") {
		sum, name, _ := strings.Cut(line, "  ")
		if !want[name] {
			t.Errorf("SHA256SUMS lists %q, not another artifact of dist/ (or twice)", name)
			continue
		}
		delete(want, name)
		b, err := os.ReadFile(filepath.Join(dist, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprintf("%x", sha256.Sum256(b)); got != sum {
			t.Errorf("%s: SHA256SUMS says %s, the file is %s", name, sum, got)
		}
	}
	for name := range want {
		t.Errorf("SHA256SUMS does not list %s", name)
	}
}

// A second build, from a fresh clone of the same commit elsewhere, is the
// same bytes.
func TestReproducible(t *testing.T) {
	clone := filepath.Join(t.TempDir(), "clone")
	run(t, nil, "git", "clone", "-q", top, clone)
	run(t, nil, "git", "-C", clone, "checkout", "-q", strings.TrimSpace(run(t, nil, "git", "-C", top, "rev-parse", "HEAD")))
	if out := run(t, nil, "git", "-C", top, "status", "--porcelain"); strings.TrimSpace(out) != "" {
		t.Fatalf("the tree has uncommitted changes; a clone of HEAD would differ (commit first):\n%s", out)
	}
	run(t, nil, filepath.Join(clone, "packaging", "dist.sh"))
	a, err := os.ReadFile(filepath.Join(dist, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(clone, "dist", "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Errorf("two builds of one commit differ:\n--- here\n%s--- the clone\n%s", a, b)
	}
}
