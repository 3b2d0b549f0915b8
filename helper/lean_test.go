package helper

import (
	"os/exec"
	"strings"
	"testing"
)

// The lean keyring binary is a fresh process for every lookup: what it
// links, it pays for at each start (package init, binary size). Neither
// crypto (crypto/rand's FIPS module has init work, and a temp-file name
// pulled it in once), nor net/http, nor the CLI's libraries.
func TestLeanKeyringLinksLittle(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/devpi-credd/devpi-credd/cmd/devpi-credd-keyring").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, bad := range []string{"crypto/", "net/http", "github.com/spf13/", "github.com/devpi-credd/devpi-credd/config"} {
			if strings.HasPrefix(pkg, bad) {
				t.Errorf("devpi-credd-keyring links %s", pkg)
			}
		}
	}
}
