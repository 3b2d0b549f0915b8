package exchange

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/devpi-credd/devpi-credd/internal/safefile"
)

// Replay remembers the identity tokens that were exchanged, until they
// expire: each is accepted once.
type Replay interface {
	// Use records jti, good until until; fresh is false when it was
	// recorded before (and has not expired).
	Use(jti string, until, now time.Time) (fresh bool, err error)
}

// maxRemembered bounds the memory: past it, exchanges are refused (fails
// closed) until tokens expire. Identity tokens live minutes.
const maxRemembered = 1 << 20

// MemoryReplay is a Replay in this process's memory: enough for one
// exchange, or replicas behind a load balancer that keeps a client on one
// (see DirReplay for replicas that share nothing else).
type MemoryReplay struct {
	mu   sync.Mutex
	seen map[string]time.Time
	next time.Time // when to sweep
}

func (m *MemoryReplay) Use(jti string, until, now time.Time) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.seen == nil {
		m.seen = map[string]time.Time{}
	}
	if !now.Before(m.next) {
		for k, t := range m.seen {
			if now.After(t) {
				delete(m.seen, k)
			}
		}
		m.next = now.Add(time.Minute)
	}
	if t, ok := m.seen[jti]; ok && !now.After(t) {
		return false, nil
	}
	if len(m.seen) >= maxRemembered {
		return false, errors.New("too many identity tokens to remember: try again when some have expired")
	}
	m.seen[jti] = until
	return true, nil
}

// DirReplay is a Replay in a directory that replicas share (a volume on
// NFS, a Kubernetes volume): one file per token, created exclusively, so
// that of two replicas given one token at once, one wins. Files of expired
// tokens are swept now and then.
type DirReplay struct {
	Dir string

	mu   sync.Mutex
	next time.Time
}

func (d *DirReplay) Use(jti string, until, now time.Time) (bool, error) {
	if err := d.Check(); err != nil {
		return false, err
	}
	d.sweep(now)
	sum := sha256.Sum256([]byte(jti))
	path := filepath.Join(d.Dir, hex.EncodeToString(sum[:]))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		// Used before; or an expired leftover the sweep has not reached.
		if exp, ok := expiry(path); ok && now.After(exp) {
			_ = os.Remove(path)
			return d.Use(jti, until, now)
		}
		return false, nil
	}
	if err != nil {
		return false, err
	}
	_, werr := fmt.Fprintf(f, "%d\n", until.Unix())
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return false, fmt.Errorf("recording a used token: %w", werr)
	}
	return true, nil
}

// Check makes the directory (0700) or checks it: a directory, not a
// link, owned by this user and writable by no one else, since anyone who
// can remove a record can replay its token.
func (d *DirReplay) Check() error {
	if err := os.MkdirAll(d.Dir, 0o700); err != nil {
		return err
	}
	st, err := os.Lstat(d.Dir)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("replay_dir %s is not a directory (a link?)", d.Dir)
	}
	if uid, ok := safefile.OwnerUID(st); ok && uid != os.Getuid() {
		return fmt.Errorf("replay_dir %s belongs to uid %d, not to this user", d.Dir, uid)
	}
	if runtime.GOOS != "windows" && st.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("replay_dir %s is writable by others (mode %04o): chmod go-w it", d.Dir, st.Mode().Perm())
	}
	return nil
}

func expiry(path string) (time.Time, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return time.Time{}, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(n, 0), true
}

func (d *DirReplay) sweep(now time.Time) {
	d.mu.Lock()
	if now.Before(d.next) {
		d.mu.Unlock()
		return
	}
	d.next = now.Add(time.Minute)
	d.mu.Unlock()
	entries, err := os.ReadDir(d.Dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		p := filepath.Join(d.Dir, e.Name())
		exp, ok := expiry(p)
		switch {
		case ok && now.After(exp.Add(Leeway)):
			_ = os.Remove(p)
		case !ok:
			// Unreadable: a crash between create and write. It refused
			// its token (failing closed); after a day no token it could
			// stand for is alive.
			if info, err := e.Info(); err == nil && now.Sub(info.ModTime()) > 24*time.Hour {
				_ = os.Remove(p)
			}
		}
	}
}
