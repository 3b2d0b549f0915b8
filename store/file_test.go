package store

import (
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/devpi-credd/devpi-credd/token"
)

func TestFileRoundTrip(t *testing.T) {
	tok, err := token.New([]byte("k"), "alice", "abcd2345", token.Expires(time.Unix(4102444800, 0)))
	if err != nil {
		t.Fatal(err)
	}
	f := File{Path: TokenPath(t.TempDir(), "srv")}
	if _, err := f.Load(); !errors.Is(err, ErrNotFound) {
		t.Errorf("Load of a missing file = %v, want ErrNotFound", err)
	}
	if err := f.Save(tok); err != nil {
		t.Fatal(err)
	}
	got, err := f.Load()
	if err != nil || !got.Equal(tok) {
		t.Fatalf("Load = %v, %v", got, err)
	}
	if runtime.GOOS == "windows" {
		return
	}
	if err := os.Chmod(f.Path, 0o640); err != nil {
		t.Fatal(err)
	}
	_, err = f.Load()
	if err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("Load of a group-readable file = %v", err)
	}
	_ = os.WriteFile(f.Path, []byte("garbage"), 0o600)
	_ = os.Chmod(f.Path, 0o600)
	_, err = f.Load()
	if !errors.Is(err, token.ErrInvalid) || strings.Contains(err.Error(), "garbage") {
		t.Errorf("Load of garbage = %v", err)
	}
	st, _ := os.Stat(filepath.Dir(f.Path))
	if st.Mode().Perm() != 0o700 {
		t.Errorf("token dir mode %v", st.Mode())
	}
	if err := f.Delete(); err != nil {
		t.Fatal(err)
	}
	if err := f.Delete(); !errors.Is(err, ErrNotFound) {
		t.Errorf("Delete of nothing = %v", err)
	}
}

func TestServerName(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:3141/":      "127-0-0-1-3141",
		"https://Devpi.Example.com/":  "devpi-example-com",
		"https://h.example/Sub/path/": "h-example-sub-path",
		"http://[::1]:3141/":          "1-3141",
		"https://h/we%20ird:x/":       "h-we-ird-x",
	} {
		u, _ := url.Parse(in)
		if got := ServerName(u); got != want || !ValidName(got) {
			t.Errorf("ServerName(%s) = %q, want %q", in, got, want)
		}
	}
	for _, bad := range []string{"", "../x", "a/b", ".hidden", "sp ace", "Upper", "a.b", "-x"} {
		if ValidName(bad) {
			t.Errorf("ValidName(%q)", bad)
		}
	}
}
