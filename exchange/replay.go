package exchange

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/devpi-credd/devpi-credd/internal/safefile"
)

// Replay remembers the identity tokens that were exchanged, until they
// expire: each is accepted once. The exchange asks Seen before it spends
// anything (a used token costs no budget), and records with Use only
// after it minted, so that a refusal for the budget or a failure records
// nothing; of two uses at once, the one whose Use loses gets nothing.
type Replay interface {
	// Seen reports whether key is recorded (and has not expired). It
	// records nothing.
	Seen(key string, now time.Time) (bool, error)
	// Use records key, good until until, atomically: fresh is false when
	// it was recorded before (by this use's rival, or long ago).
	Use(key string, until, now time.Time) (fresh bool, err error)
	// Forget removes the record Use just made, for a token that was not
	// handed out after all.
	Forget(key string) error
}

// ErrReplayFull: the replay store holds as many tokens as it may.
var ErrReplayFull = errors.New("too many identity tokens to remember: try again when some have expired")

// recordGrace is how long after its expiry a DirReplay record is
// swept. Replicas sharing replay_dir sweep by their own clocks: a record
// swept by a replica whose clock is ahead would let a replica whose clock
// is behind take its token again. Replicas' clocks must agree within
// recordGrace.
const recordGrace = 10 * time.Minute

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

func (m *MemoryReplay) Seen(key string, now time.Time) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.seen[key]
	return ok && !now.After(t), nil
}

func (m *MemoryReplay) Use(key string, until, now time.Time) (bool, error) {
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
	if t, ok := m.seen[key]; ok && !now.After(t) {
		return false, nil
	}
	if len(m.seen) >= maxRemembered {
		return false, ErrReplayFull
	}
	m.seen[key] = until
	return true, nil
}

func (m *MemoryReplay) Forget(key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.seen, key)
	return nil
}

// DirReplay is a Replay in a directory that replicas share (a volume on
// NFS, a Kubernetes volume): one file per token, created exclusively, so
// that of two replicas given one token at once, one wins. Files of expired
// tokens are swept now and then.
//
// The directory is opened once and checked through that handle, and every
// record is made, read and removed relative to it: renaming the
// directory, or another in its place, redirects nothing. It must hold
// nothing but records, since the sweep removes what it made.
type DirReplay struct {
	Dir string

	mu   sync.Mutex
	root *os.Root
	next time.Time // when to sweep
}

// OpenDirReplay opens and checks dir (see Check): the DirReplay to hand
// the exchange, so that the directory checked is the one used.
func OpenDirReplay(dir string) (*DirReplay, error) {
	d := &DirReplay{Dir: dir}
	if err := d.Check(); err != nil {
		return nil, err
	}
	return d, nil
}

// recordHeader begins every record, so that a record is known by its
// content as well as its name.
const recordHeader = "devpi-credd replay v1\n"

// maxRecord bounds what is read of a file to tell whether it is a record.
const maxRecord = 128

// Check opens the directory (making it 0700 if missing) and checks it,
// once: a directory, not a link, owned by this user and writable by no
// one else (anyone who can remove a record can replay its token), whose
// own parent only its owner (this user or root) can write, so that no one
// else can make its name first, and whose higher parents only their owner
// can write or are sticky (as /tmp), so that no one else can swap its name
// for another before it is opened; and that it holds nothing but records, since the sweep
// removes records.
func (d *DirReplay) Check() error {
	_, err := d.open()
	return err
}

// Close closes the directory's handle.
func (d *DirReplay) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.root == nil {
		return nil
	}
	err := d.root.Close()
	d.root = nil
	return err
}

func (d *DirReplay) open() (*os.Root, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.root != nil {
		return d.root, nil
	}
	root, err := openChecked(d.Dir, true)
	if err != nil {
		return nil, err
	}
	d.root = root
	return root, nil
}

// CheckDirReplay makes DirReplay's checks of dir without making anything
// (config check): exists is false, and err nil, when dir does not exist
// yet but its parents pass (serve makes it, 0700).
func CheckDirReplay(dir string) (exists bool, err error) {
	root, err := openChecked(dir, false)
	if errors.Is(err, errNotMade) {
		return false, nil
	}
	if err != nil {
		return true, err
	}
	return true, root.Close()
}

// errNotMade: openChecked was not to make the directory, and it is missing.
var errNotMade = errors.New("replay_dir does not exist")

// openChecked opens dir and checks it and its parents; with create, it
// makes dir (0700) and its missing parents first.
func openChecked(d string, create bool) (*os.Root, error) {
	dir, err := filepath.Abs(d)
	if err != nil {
		return nil, fmt.Errorf("replay_dir %s: %w", d, err)
	}
	// The parents that exist are checked before anything is made, so
	// that a refused check leaves nothing behind (run as root, it would
	// leave a directory the daemon's user cannot use); and again after,
	// for those MkdirAll made.
	if err := checkParents(dir, true); err != nil {
		return nil, err
	}
	if !create {
		if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
			return nil, errNotMade
		}
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("replay_dir: %w", err)
	}
	if err := checkParents(dir, false); err != nil {
		return nil, err
	}
	named, err := os.Lstat(dir)
	if err != nil {
		return nil, fmt.Errorf("replay_dir: %w", err)
	}
	if !named.IsDir() {
		return nil, fmt.Errorf("replay_dir %s is not a directory (a link?)", dir)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("replay_dir: %w", err)
	}
	if err := checkRoot(root, dir, named); err != nil {
		root.Close()
		return nil, err
	}
	return root, nil
}

// checkParents: each directory above dir is owned by this user or root;
// dir's own parent is writable by no one else, and those higher up by
// others only with the sticky bit (no one can rename there what is not
// theirs); with missingOK, those that do not exist yet are passed over.
func checkParents(dir string, missingOK bool) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if missingOK && errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("replay_dir: %w", err)
		}
		if uid, ok := safefile.OwnerUID(st); ok && uid != 0 && uid != os.Getuid() {
			return fmt.Errorf("replay_dir %s is in %s, which belongs to uid %d: its owner could swap replay_dir for another directory; use one whose parents are yours or root's", dir, p, uid)
		}
		if p == filepath.Dir(dir) && st.Mode().Perm()&0o022 != 0 {
			// Sticky or not: in a directory others can write, another
			// uid can make replay_dir's name before the daemon does, and
			// the daemon then refuses to start.
			return fmt.Errorf("replay_dir %s is in %s, which others can write (mode %04o; sticky or not): another user could make replay_dir's name first and keep the daemon from starting; put it in a directory only you (or root) can write", dir, p, st.Mode().Perm())
		}
		if st.Mode().Perm()&0o022 != 0 && st.Mode()&fs.ModeSticky == 0 {
			return fmt.Errorf("replay_dir %s is in %s, which others can write (mode %04o) without the sticky bit: they could swap replay_dir for another directory; chmod go-w or +t it", dir, p, st.Mode().Perm())
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// checkRoot checks the directory through its handle: the one named when
// it was opened (named), the user's, private, holding only records.
func checkRoot(root *os.Root, dir string, named fs.FileInfo) error {
	st, err := root.Stat(".")
	if err != nil {
		return fmt.Errorf("replay_dir: %w", err)
	}
	if !os.SameFile(st, named) {
		return fmt.Errorf("replay_dir %s was replaced while it was opened", dir)
	}
	if uid, ok := safefile.OwnerUID(st); ok && uid != os.Getuid() {
		return fmt.Errorf("replay_dir %s belongs to uid %d, not to this user", dir, uid)
	}
	if runtime.GOOS != "windows" && st.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("replay_dir %s is writable by others (mode %04o): chmod go-w it", dir, st.Mode().Perm())
	}
	entries, err := readDir(root)
	if err != nil {
		return fmt.Errorf("replay_dir: %w", err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".nfs") {
			continue // NFS's own, for a file removed while open: never ours to remove
		}
		if _, _, ok := readRecord(root, e.Name()); !ok {
			return fmt.Errorf("replay_dir %s holds %q, which the exchange did not make: give the exchange a directory of its own", dir, e.Name())
		}
	}
	return nil
}

func readDir(root *os.Root) ([]fs.DirEntry, error) {
	f, err := root.Open(".")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.ReadDir(-1)
}

// recordName is key's file: the hex SHA-256 of the key (a key is the
// issuer and what the caller sent, of any length and any bytes).
func recordName(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

func isRecordName(name string) bool {
	if len(name) != 2*sha256.Size {
		return false
	}
	for _, c := range name {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// readRecord reads name in root: ok when it is a record, that is a
// regular file of a record's name whose content is a record's; whole when
// it holds its expiry (a record a crash cut short holds a beginning of
// one).
func readRecord(root *os.Root, name string) (exp time.Time, whole, ok bool) {
	if !isRecordName(name) {
		return time.Time{}, false, false
	}
	st, err := root.Lstat(name)
	if err != nil || !st.Mode().IsRegular() || st.Size() > maxRecord {
		return time.Time{}, false, false
	}
	f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return time.Time{}, false, false
	}
	defer f.Close()
	if fst, err := f.Stat(); err != nil || !os.SameFile(st, fst) {
		return time.Time{}, false, false
	}
	b, err := io.ReadAll(io.LimitReader(f, maxRecord+1))
	if err != nil || len(b) > maxRecord {
		return time.Time{}, false, false
	}
	return parseRecord(b)
}

// parseRecord: "devpi-credd replay v1\nUNIX\n"; or what the exchange
// wrote before records had a header ("UNIX\n"); or, from a crash, a
// beginning of a record.
func parseRecord(b []byte) (exp time.Time, whole, ok bool) {
	body, headed := bytes.CutPrefix(b, []byte(recordHeader))
	if !headed && strings.HasPrefix(recordHeader, string(b)) {
		return time.Time{}, false, true // cut short in the header
	}
	digits, ended := bytes.CutSuffix(body, []byte("\n"))
	for _, c := range digits {
		if c < '0' || c > '9' {
			return time.Time{}, false, false
		}
	}
	if !ended || len(digits) == 0 {
		// Cut short after the header; the legacy form was written whole
		// or not at all (a crash between create and write left it empty).
		return time.Time{}, false, headed
	}
	n, err := strconv.ParseInt(string(digits), 10, 64)
	if err != nil {
		return time.Time{}, false, false
	}
	return time.Unix(n, 0), true, true
}

func (d *DirReplay) Seen(key string, now time.Time) (bool, error) {
	root, err := d.open()
	if err != nil {
		return false, err
	}
	name := recordName(key)
	if _, err := root.Lstat(name); errors.Is(err, fs.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("reading the replay record: %w", err)
	}
	exp, whole, ok := readRecord(root, name)
	switch {
	case !ok:
		return false, fmt.Errorf("replay_dir %s holds %q, which the exchange did not make", d.Dir, name)
	case !whole:
		return true, nil // a crash between create and write: it refused its token, failing closed
	}
	return !now.After(exp), nil
}

func (d *DirReplay) Use(key string, until, now time.Time) (bool, error) {
	root, err := d.open()
	if err != nil {
		return false, err
	}
	d.sweep(root, now)
	name := recordName(key)
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		// Used before. A record of an expired token is never replaced
		// here, only swept: an expired token never verifies, and a
		// replica that removed a record it read as expired could remove
		// the record its rival just made.
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("recording a used token: %w", err)
	}
	_, werr := fmt.Fprintf(f, "%s%d\n", recordHeader, until.Unix())
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		// Records nothing: the token was not handed out.
		_ = root.Remove(name)
		return false, fmt.Errorf("recording a used token: %w", werr)
	}
	return true, nil
}

func (d *DirReplay) Forget(key string) error {
	root, err := d.open()
	if err != nil {
		return err
	}
	if err := root.Remove(recordName(key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing a replay record: %w", err)
	}
	return nil
}

// sweep removes records recordGrace past their expiry, now and then:
// only records (by name and content), never anything else that came to be
// in the directory.
func (d *DirReplay) sweep(root *os.Root, now time.Time) {
	d.mu.Lock()
	if now.Before(d.next) {
		d.mu.Unlock()
		return
	}
	d.next = now.Add(time.Minute)
	d.mu.Unlock()
	entries, err := readDir(root)
	if err != nil {
		return
	}
	for _, e := range entries {
		exp, whole, ok := readRecord(root, e.Name())
		switch {
		case !ok:
		case whole && now.After(exp.Add(recordGrace)):
			_ = root.Remove(e.Name())
		case !whole:
			// A crash between create and write. It refused its token
			// (failing closed); after a day no token it could stand for
			// is alive.
			if info, err := e.Info(); err == nil && now.Sub(info.ModTime()) > 24*time.Hour {
				_ = root.Remove(e.Name())
			}
		}
	}
}
