//go:build unix

package daemon

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Item 4: an audit_log that is not a regular file is refused at load; a
// loose mode is tightened.
func TestAuditLogMustBeAPrivateFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := openAudit(fifo, discardLog()); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("a FIFO as audit log: %v", err)
	}
	if _, err := openAudit(dir, discardLog()); err == nil {
		t.Error("a directory as audit log was accepted")
	}
	loose := filepath.Join(dir, "audit.log")
	if err := os.WriteFile(loose, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(loose, 0o666); err != nil {
		t.Fatal(err)
	}
	a, err := openAudit(loose, discardLog())
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	if st, _ := os.Stat(loose); st.Mode().Perm() != 0o600 {
		t.Errorf("audit log left at %v", st.Mode())
	}
}

// Item 5: a FIFO as token_file neither blocks the start nor the reloads,
// and SIGTERM still stops the daemon.
func TestFIFOTokenFileBlocksNothing(t *testing.T) {
	done := make(chan *fixture, 1)
	var fifo string
	go func() {
		f := newFixtureWith(t, "http://h/", mintRoot(t, "abcd2345"), "", nil)
		f.stop()
		fifo = filepath.Join(f.dir, "tokens", "fifo.token")
		if err := syscall.Mkfifo(fifo, 0o600); err != nil {
			t.Error(err)
		}
		text, _ := os.ReadFile(f.config)
		text = []byte(strings.Replace(string(text), f.tokenFile, fifo, 1))
		if err := os.WriteFile(f.config, text, 0o600); err != nil {
			t.Error(err)
		}
		f.restart(t, Options{})
		done <- f
	}()
	var f *fixture
	select {
	case f = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the daemon blocked on a FIFO as token file")
	}
	st, err := f.client.Status(context.Background())
	if err != nil || !strings.Contains(st.Servers[0].Error, "not a regular file") {
		t.Fatalf("status: %+v %v", st, err)
	}
	// Config edits still apply.
	text, _ := os.ReadFile(f.config)
	if err := os.WriteFile(f.config, []byte(strings.Replace(string(text), `default_ttl = "2m"`, `default_ttl = "3m"`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, reloadWithin, "reload with a FIFO as token file", func() bool { return f.d.Config().DefaultTTL == 3*time.Minute })
	// A FIFO as the config itself: refused, the previous config serves.
	if err := os.Remove(f.config); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(f.config, 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, reloadWithin, "a FIFO config reported", func() bool {
		st, err := f.client.Status(context.Background())
		return err == nil && strings.Contains(st.ConfigError, "not a regular file")
	})
}

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
