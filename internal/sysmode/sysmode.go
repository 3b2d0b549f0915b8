package sysmode

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/devpi-credd/devpi-credd/approval"
	"github.com/devpi-credd/devpi-credd/config"
	"github.com/devpi-credd/devpi-credd/internal/safefile"
	"github.com/devpi-credd/devpi-credd/internal/xdg"
	"github.com/devpi-credd/devpi-credd/store"
	"github.com/devpi-credd/devpi-credd/token"
)

// ConfigPath, StateDir and ApprovalPath are the system daemon's files,
// as it finds them under the unit's environment.
func ConfigPath() string { return xdg.ConfigFile(xdg.SystemGetenv) }

func StateDir() string { return xdg.StateDir(xdg.SystemGetenv) }

// ApprovalPath is the daemon's approval record (store.ApprovalFile).
func ApprovalPath() string { return store.ApprovalPath(StateDir()) }

// Account is a user's uid and primary gid.
type Account struct{ UID, GID int }

// Server is a server whose root token Setup stores: the one with URL, or,
// when URL is nil, the config's server called Name. Name "" is
// store.ServerName(URL).
type Server struct {
	Name  string
	URL   *url.URL
	Token *token.Token
}

// Options say what Setup sets up.
type Options struct {
	// Root prefixes every path read and written: tests set up a tree of
	// their own. "" is the system's.
	Root string
	// Daemon is the account of the daemon's user (xdg.SystemUser).
	Daemon Account
	// Serve is the uid the daemon serves (allow_uids).
	Serve int
	// Server, when set, is the server whose root token to store.
	Server *Server
	// Check, when set, checks the token against its server; it runs
	// before anything is written.
	Check func(root *url.URL, t *token.Token) error
	// ResetApproval replaces an approval record that is there with the
	// first one: whoever enrolled (a program of the user's that was
	// first?) no longer approves anything, and the person enrols again.
	ResetApproval bool
}

// Action is what Setup did to a file or directory.
type Action string

const (
	Created Action = "created"
	// Updated: its content replaced.
	Updated Action = "updated"
	// Secured: its owner or mode set right, its content kept.
	Secured   Action = "secured"
	Unchanged Action = "unchanged"
)

// Change is one file or directory and what Setup did to it.
type Change struct {
	Path   string `json:"path"` // on the system, without Options.Root
	Action Action `json:"action"`
}

// Result says what Setup did.
type Result struct {
	// Server and URL name the server whose token Setup stored.
	Server string   `json:"server,omitempty"`
	URL    string   `json:"url,omitempty"`
	Files  []Change `json:"files"`
}

// Changed reports whether Setup changed anything.
func (r *Result) Changed() bool {
	for _, c := range r.Files {
		if c.Action != Unchanged {
			return true
		}
	}
	return false
}

// ErrNotInStateDir is wrapped when the config keeps a server's token
// where Setup does not write: outside the daemon's state directory, or in
// the keychain.
var ErrNotInStateDir = errors.New("not in the daemon's state directory")

// Setup makes the system daemon's files say what o asks, and reports what
// it did; a second run with the same options changes nothing. The config
// (/etc/devpi-credd/config.toml, root's, 0644: the daemon's user reads it,
// the served user cannot change it) gets the sockets, o.Serve in
// allow_uids with the grants of the person served (session, lock,
// approval), and the server; the token goes to the server's token file in
// the state directory (/var/lib/devpi-credd, the daemon's, 0700; the file
// 0600); the approval record (approval.json, the daemon's, 0600) is made
// when missing with uploads needing a code and no authenticator yet, so
// that nothing uploads until the person enrols, and is left alone when
// there. Everything is read and checked before anything is written.
func Setup(o Options) (*Result, error) {
	s := &setup{o: o, res: &Result{}}
	path := ConfigPath()
	old, err := s.readConfig(path)
	if err != nil {
		return nil, err
	}
	data, err := config.EnsureSystem(path, old, config.System{
		Socket: xdg.Socket(xdg.SystemGetenv), SharedSocket: xdg.SystemSocket, AllowUIDs: []int{o.Serve},
		Grants: []string{config.GrantSession, config.GrantLock, config.GrantApproval},
	}, xdg.SystemGetenv)
	if err != nil {
		return nil, err
	}
	var tokenFile string
	if o.Server != nil {
		if data, tokenFile, err = s.server(path, data); err != nil {
			return nil, err
		}
	}
	if err := s.dir(filepath.Dir(path), 0o755, Account{os.Geteuid(), os.Getegid()}); err != nil {
		return nil, err
	}
	if err := s.config(path, old, data); err != nil {
		return nil, err
	}
	if err := s.dir(StateDir(), 0o700, o.Daemon); err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(s.path(StateDir()))
	if err != nil {
		return nil, err
	}
	defer root.Close()
	if tokenFile != "" {
		if err := s.token(root, tokenFile); err != nil {
			return nil, err
		}
	}
	if err := s.approval(root); err != nil {
		return nil, err
	}
	return s.res, nil
}

type setup struct {
	o   Options
	res *Result
}

// path is p under Options.Root.
func (s *setup) path(p string) string { return filepath.Join(s.o.Root, p) }

func (s *setup) did(p string, a Action) { s.res.Files = append(s.res.Files, Change{p, a}) }

func (s *setup) readConfig(path string) ([]byte, error) {
	data, _, err := safefile.Read(s.path(path), config.MaxSize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return data, err
}

// server adds the server to the config when it is not there, checks the
// token against it, and returns the config and the token file, relative
// to the state directory.
func (s *setup) server(path string, data []byte) ([]byte, string, error) {
	srv := s.o.Server
	name := srv.Name
	if srv.URL != nil {
		if name == "" {
			name = store.ServerName(srv.URL)
		}
		var err error
		if data, name, _, err = config.AddServer(path, data, name, srv.URL, false, xdg.SystemGetenv); err != nil {
			return nil, "", err
		}
	}
	c, err := config.Parse(path, data, xdg.SystemGetenv)
	if err != nil {
		return nil, "", err
	}
	cs, ok := c.Server(name)
	if !ok {
		return nil, "", fmt.Errorf("%s has no server %q: give its url", path, name)
	}
	if cs.Keychain {
		return nil, "", fmt.Errorf("server %s keeps its token in the keychain, %w: remove keychain = true from [servers.%s] in %s", name, ErrNotInStateDir, name, path)
	}
	rel, err := filepath.Rel(StateDir(), cs.TokenFile)
	if err != nil || !filepath.IsLocal(rel) || rel == "." {
		return nil, "", fmt.Errorf("server %s keeps its token in %s, %w (%s): remove token_file from [servers.%s] in %s", name, cs.TokenFile, ErrNotInStateDir, StateDir(), name, path)
	}
	if s.o.Check != nil {
		if err := s.o.Check(cs.URL, srv.Token); err != nil {
			return nil, "", err
		}
	}
	s.res.Server, s.res.URL = name, cs.URL.String()
	return data, rel, nil
}

// config writes the config, root's and readable by all (the daemon's user
// reads it; it holds no secret), or sets its owner and mode right.
func (s *setup) config(path string, old, data []byte) error {
	if old != nil && bytes.Equal(old, data) {
		return s.own(nil, path, 0o644, Account{os.Geteuid(), os.Getegid()})
	}
	if err := safefile.Write(s.path(path), data, 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	s.did(path, map[bool]Action{true: Created, false: Updated}[old == nil])
	return nil
}

// token writes the token file (rel, in the state directory root) and the
// directories to it, the daemon's user's.
func (s *setup) token(root *os.Root, rel string) error {
	if dir := filepath.Dir(rel); dir != "." {
		parts := strings.Split(dir, string(filepath.Separator))
		for i := range parts {
			if err := s.subdir(root, filepath.Join(parts[:i+1]...)); err != nil {
				return err
			}
		}
	}
	return s.daemonFile(root, rel, []byte(s.o.Server.Token.Reveal()+"\n"), true)
}

// approval makes the daemon's approval record when there is none: uploads
// need a code, and no authenticator is enrolled yet, so none is minted
// until the person enrols (fail closed). One that is there is the
// person's: its content is left alone, unless ResetApproval says to start
// over.
func (s *setup) approval(root *os.Root) error {
	rel, _ := filepath.Rel(StateDir(), ApprovalPath())
	// As store.ApprovalFile saves it, which writes as the user it runs as:
	// this file is the daemon user's.
	first, err := json.Marshal(approval.Record{Policy: approval.Policy{Uploads: true}})
	if err != nil {
		return err
	}
	return s.daemonFile(root, rel, first, s.o.ResetApproval)
}

// daemonFile makes rel, in the state directory root, a file of the
// daemon's user's, mode 0600, that holds data: written when it is missing,
// or holds something else and replace says so; else only its owner and
// mode are set right.
func (s *setup) daemonFile(root *os.Root, rel string, data []byte, replace bool) error {
	path := filepath.Join(StateDir(), rel)
	old, err := readIn(root, rel)
	switch {
	case err == nil && (!replace || bytes.Equal(old, data)):
		return s.own(root, rel, 0o600, s.o.Daemon)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("reading %s: %w", path, err)
	}
	existed := err == nil
	if err := safefile.WriteIn(root, rel, data, 0o600, s.o.Daemon.UID, s.o.Daemon.GID); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	s.did(path, map[bool]Action{false: Created, true: Updated}[existed])
	return nil
}

// dir makes dir (a directory whose parent only root may change:
// /etc, /var/lib) with mode for a, or sets its owner and mode right.
func (s *setup) dir(dir string, mode fs.FileMode, a Account) error {
	p := s.path(dir)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	if err := os.Mkdir(p, mode); err == nil {
		if err := os.Chmod(p, mode); err != nil { // the umask's part
			return err
		}
		if err := os.Lchown(p, a.UID, a.GID); err != nil {
			return err
		}
		s.did(dir, Created)
		return nil
	} else if !errors.Is(err, fs.ErrExist) {
		return err
	}
	return s.own(nil, dir, mode|fs.ModeDir, a)
}

// subdir is dir for a directory in the state directory, whose owner may
// put links there: root keeps every step inside it.
func (s *setup) subdir(root *os.Root, rel string) error {
	if err := root.Mkdir(rel, 0o700); err == nil {
		if err := root.Chmod(rel, 0o700); err != nil {
			return err
		}
		if err := root.Lchown(rel, s.o.Daemon.UID, s.o.Daemon.GID); err != nil {
			return err
		}
		s.did(filepath.Join(StateDir(), rel), Created)
		return nil
	} else if !errors.Is(err, fs.ErrExist) {
		return err
	}
	return s.own(root, rel, 0o700|fs.ModeDir, s.o.Daemon)
}

// own gives name (in root, else on the system) to a with mode when it is
// not so already. A link is refused: the file is a directory or a regular
// file, never where a link points.
func (s *setup) own(root *os.Root, name string, mode fs.FileMode, a Account) error {
	lstat, lchown, chmod, shown := os.Lstat, os.Lchown, os.Chmod, name
	if root != nil {
		lstat, lchown, chmod, shown = root.Lstat, root.Lchown, root.Chmod, filepath.Join(StateDir(), name)
	} else {
		name = s.path(name)
	}
	st, err := lstat(name)
	if err != nil {
		return err
	}
	if st.Mode().Type() != mode.Type() {
		return fmt.Errorf("%s is %s, not %s", shown, kind(st.Mode()), kind(mode))
	}
	uid, _ := safefile.OwnerUID(st)
	if uid == a.UID && st.Mode().Perm() == mode.Perm() {
		s.did(shown, Unchanged)
		return nil
	}
	if err := lchown(name, a.UID, a.GID); err != nil {
		return err
	}
	if err := chmod(name, mode.Perm()); err != nil {
		return err
	}
	s.did(shown, Secured)
	return nil
}

// readIn reads a regular file in root, not through a link, and without
// blocking on anything else its owner could put there.
func readIn(root *os.Root, rel string) ([]byte, error) {
	if st, err := root.Lstat(rel); err == nil && st.Mode()&fs.ModeSymlink != 0 {
		return nil, fmt.Errorf("%s is a symbolic link, not a regular file", rel)
	}
	f, err := root.OpenFile(rel, os.O_RDONLY|safefile.NonBlock|safefile.NoFollow, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is %s, not a regular file", rel, kind(st.Mode()))
	}
	return io.ReadAll(io.LimitReader(f, store.MaxTokenFile))
}

func kind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m.IsRegular():
		return "a regular file"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	}
	return "a special file"
}
