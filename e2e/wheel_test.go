//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWheel: the wheel carries the binaries and the keyring backend; once
// installed, the backend finds the binaries that came with it, with
// nothing on PATH.
func TestWheel(t *testing.T) {
	u := newUser(t)
	dist := filepath.Join(u.home, "dist")
	script, err := filepath.Abs("../packaging/wheel/build_wheel.py")
	if err != nil {
		t.Fatal(err)
	}
	r := u.run(t, "", bed.py("client", "python"), script, "0.0.1", filepath.Dir(bed.bin), dist)
	if r.code != 0 {
		t.Fatalf("build_wheel: %s", r)
	}
	wheel := strings.TrimSpace(r.stdout)
	target := filepath.Join(u.home, "site")
	r = u.run(t, "", bed.py("client", "python"), "-m", "pip", "install", "--no-deps", "--no-index", "--target", target, wheel)
	if r.code != 0 {
		t.Fatalf("pip install the wheel: %s", r)
	}
	bin := filepath.Join(target, "bin", "devpi-credd")
	if st, err := os.Stat(bin); err != nil || st.Mode().Perm()&0o111 == 0 {
		t.Fatalf("the binary is not installed executable: %v %v", st, err)
	}
	if r := u.run(t, "", bin, "--version"); r.code != 0 || !strings.HasPrefix(r.stdout, "devpi-credd version") {
		t.Errorf("installed binary: %s", r)
	}
	r = u.runEnv(t, []string{"PYTHONPATH=" + target, "PATH=/usr/bin:/bin", "PYTHON_KEYRING_BACKEND="}, "", bed.py("client", "python"), "-c", `
import keyring.backend, devpi_credd_keyring
names = [type(b).__name__ for b in keyring.backend.get_all_keyring()]
assert "DevpiCreddKeyring" in names, names
print(devpi_credd_keyring._program())
print(devpi_credd_keyring._command(devpi_credd_keyring._program())[0])
`)
	// It runs the lean helper that came with it.
	if r.code != 0 || strings.TrimSpace(r.stdout) != bin+"\n"+filepath.Join(target, "bin", "devpi-credd-keyring") {
		t.Errorf("the backend does not find the binaries it came with: %s", r)
	}
}
