package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/devpi-credd/devpi-credd/exchange"
	"github.com/devpi-credd/devpi-credd/helper"
	"github.com/devpi-credd/devpi-credd/token"
)

// needRoot: mounting a tmpfs (a real full disk) needs root, which CI has.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root to mount a small tmpfs; CI runs as root")
	}
}

// tmpfs mounts a tmpfs of size bytes at a new directory for the test.
func tmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		t.Fatalf("mounting a tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// fill writes into dir until the file system is full.
func fill(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	fh, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := fh.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			return p
		}
	}
}

// Item 4: with the audit log on a full disk, no token is handed out; the
// client is told why, status shows it, and minting resumes by itself.
func TestAuditLogOnFullDiskFailsClosed(t *testing.T) {
	needRoot(t)
	disk := tmpfs(t, 64<<10)
	audit := filepath.Join(disk, "audit.log")
	f := newFixtureWith(t, "http://h/", mintRoot(t, "abcd2345"), fmt.Sprintf("\n[servers.other]\nurl = \"http://other/\"\n"), nil)
	f.stop()
	text, _ := os.ReadFile(f.config)
	text = []byte(strings.Replace(string(text), fmt.Sprintf("audit_log = %q", f.audit), fmt.Sprintf("audit_log = %q", audit), 1))
	if err := os.WriteFile(f.config, text, 0o600); err != nil {
		t.Fatal(err)
	}
	f.restart(t, Options{})
	if _, err := f.get("http://h/"); err != nil {
		t.Fatalf("before the disk is full: %v", err)
	}
	filler := fill(t, disk)
	// The audit log's last page may still hold a few lines; then every
	// mint is refused.
	var ae *helper.APIError
	for i := 0; ; i++ {
		c, err := f.get("http://h/alice/dev/")
		if err == nil {
			if i > 4096/100 {
				t.Fatal("the audit log still takes lines on a full disk")
			}
			continue
		}
		if c != nil || !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable || !strings.Contains(ae.Msg, "cannot be recorded in the audit log") {
			t.Fatalf("full disk: got %+v, %v; want a 503 and no token", c, err)
		}
		break
	}
	for range 3 {
		c, err := f.get("http://h/alice/dev/")
		if c != nil || !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable {
			t.Fatalf("full disk: got %+v, %v; want a 503 and no token", c, err)
		}
		if strings.Contains(ae.Msg, "\n") {
			t.Errorf("not one line: %q", ae.Msg)
		}
	}
	st, _ := f.client.Status(context.Background())
	if !strings.Contains(st.AuditError, "no space left") {
		t.Errorf("status does not show the audit error: %+v", st)
	}
	minted := st.Minted
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if _, err := f.get("http://h/alice/dev/"); err != nil {
		t.Fatalf("minting did not resume once the disk had room: %v", err)
	}
	st, _ = f.client.Status(context.Background())
	if st.AuditError != "" || st.Minted != minted+1 {
		t.Errorf("after the disk has room: %+v", st)
	}
	// Every line in the log is whole: a line cut short was cut off.
	f.stop()
	lines := readLines(t, audit)
	for _, l := range lines {
		var e auditEntry
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Errorf("a broken line in the audit log: %q", l)
		}
	}
	if mints := strings.Count(strings.Join(lines, "\n"), `"event":"mint"`); mints != int(st.Minted) {
		t.Errorf("%d mint lines for %d tokens handed out", mints, st.Minted)
	}
}

// The exchange with its audit log on a full disk: no token, and each
// exchange refused for it counts once in status.
func TestExchangeAuditOnFullDiskCountsOnce(t *testing.T) {
	needRoot(t)
	disk := tmpfs(t, 64<<10)
	audit := filepath.Join(disk, "audit.log")
	f, is, _ := exchangeFixture(t, mintRoot(t, "abcd2345", token.Expires(time.Now().Add(time.Hour))))
	f.stop()
	text, _ := os.ReadFile(f.config)
	text = []byte(strings.Replace(string(text), fmt.Sprintf("audit_log = %q", f.audit), fmt.Sprintf("audit_log = %q", audit), 1))
	if err := os.WriteFile(f.config, text, 0o600); err != nil {
		t.Fatal(err)
	}
	d, _ := f.restart(t, Options{IssuerHTTP: is.Client()})
	c := &exchange.Client{Base: &url.URL{Scheme: "http", Host: d.ExchangeAddr()}, HTTP: http.DefaultClient}
	fill(t, disk)
	for i := 0; ; i++ {
		_, err := c.Exchange(t.Context(), is.Sign(map[string]any{"aud": "devpi"}))
		if err == nil {
			if i > 4096/100 {
				t.Fatal("the audit log still takes lines on a full disk")
			}
			continue
		}
		if !strings.Contains(err.Error(), "unavailable") {
			t.Fatalf("full disk: %v, want unavailable", err)
		}
		break
	}
	before, _ := f.client.Status(t.Context())
	if _, err := c.Exchange(t.Context(), is.Sign(map[string]any{"aud": "devpi"})); err == nil {
		t.Fatal("a token handed out on a full disk")
	}
	after, _ := f.client.Status(t.Context())
	if after.Refused != before.Refused+1 || after.Exchanged != before.Exchanged {
		t.Errorf("one refused exchange: refused %d → %d, exchanged %d → %d", before.Refused, after.Refused, before.Exchanged, after.Exchanged)
	}
}
