package devpi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/devpi-credd/devpi-credd/internal/safefile"
)

// StateDir is a directory in devpi-client's layout: auth.json holds the
// sessions per server root, current.json the server in use. devpi-credd
// keeps its own sessions in the same format in its own directory, so one
// piece of code reads both.
type StateDir struct {
	Dir string
	// CurrentPath overrides Dir/current.json (devpi-client uses
	// $VIRTUAL_ENV/devpi.json when it exists).
	CurrentPath string
}

// ClientDir returns devpi-client's directory: $DEVPI_CLIENTDIR, else
// ~/.devpi/client; and the virtualenv-local current file when there is one.
func ClientDir(getenv func(string) string) (StateDir, error) {
	dir := getenv("DEVPI_CLIENTDIR")
	if dir == "" {
		home := getenv("HOME")
		if home == "" {
			h, err := os.UserHomeDir()
			if err != nil {
				return StateDir{}, fmt.Errorf("finding devpi-client's directory: %w", err)
			}
			home = h
		}
		dir = filepath.Join(home, ".devpi", "client")
	} else if strings.HasPrefix(dir, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			dir = filepath.Join(home, dir[2:])
		}
	}
	sd := StateDir{Dir: dir}
	if venv := getenv("VIRTUAL_ENV"); venv != "" {
		if p := filepath.Join(venv, "devpi.json"); fileExists(p) {
			sd.CurrentPath = p
		}
	}
	return sd, nil
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

func (d StateDir) authPath() string { return filepath.Join(d.Dir, "auth.json") }

func (d StateDir) currentPath() string {
	if d.CurrentPath != "" {
		return d.CurrentPath
	}
	return filepath.Join(d.Dir, "current.json")
}

// readJSON loads a JSON object; a missing or empty file is an empty object,
// as devpi-client treats it.
func readJSON(path string) (map[string]json.RawMessage, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]json.RawMessage{}, nil
	}
	if err != nil {
		return nil, err
	}
	m := map[string]json.RawMessage{}
	if len(strings.TrimSpace(string(b))) == 0 {
		return m, nil
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s is not a JSON object: %v", path, err)
	}
	return m, nil
}

// writeJSON writes as devpi-client does (indent 2, sorted keys), privately
// and atomically.
func writeJSON(path string, m map[string]json.RawMessage) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return safefile.Write(path, b, 0o600)
}

// Root returns the root URL of the server in use (from current.json's login
// URL), or "" when none is set.
func (d StateDir) Root() (string, error) {
	m, err := readJSON(d.currentPath())
	if err != nil {
		return "", fmt.Errorf("reading devpi state: %w", err)
	}
	var login string
	if raw, ok := m["login"]; ok {
		_ = json.Unmarshal(raw, &login)
	}
	if login == "" {
		return "", nil
	}
	u, err := url.Parse(login)
	if err != nil {
		return "", fmt.Errorf("reading devpi state: bad login URL in %s", d.currentPath())
	}
	return u.ResolveReference(&url.URL{Path: "."}).String(), nil
}

// CurrentUser is the user devpi-client acts as: $DEVPI_USER, else the
// "username" in current.json ("" when neither is set; then the most recent
// session for the server is the one).
func (d StateDir) CurrentUser(getenv func(string) string) (string, error) {
	if u := getenv("DEVPI_USER"); u != "" {
		return u, nil
	}
	m, err := readJSON(d.currentPath())
	if err != nil {
		return "", fmt.Errorf("reading devpi state: %w", err)
	}
	var user string
	if raw, ok := m["username"]; ok {
		_ = json.Unmarshal(raw, &user)
	}
	return user, nil
}

// SetRoot records root as the server in use, keeping the file's other keys.
func (d StateDir) SetRoot(root string) error {
	m, err := readJSON(d.currentPath())
	if err != nil {
		return err
	}
	b, _ := json.Marshal(strings.TrimSuffix(root, "/") + "/+login")
	m["login"] = b
	return writeJSON(d.currentPath(), m)
}

type authFile struct {
	all  map[string]json.RawMessage
	auth map[string][][2]string
}

func (d StateDir) readAuth() (*authFile, error) {
	all, err := readJSON(d.authPath())
	if err != nil {
		return nil, fmt.Errorf("reading sessions: %w", err)
	}
	af := &authFile{all: all, auth: map[string][][2]string{}}
	if raw, ok := all["auth"]; ok {
		// devpi-client ignores an auth entry that is not a mapping.
		var entries map[string][]json.RawMessage
		if json.Unmarshal(raw, &entries) == nil {
			for root, list := range entries {
				for _, pair := range list {
					var p [2]string
					if json.Unmarshal(pair, &p) == nil {
						af.auth[root] = append(af.auth[root], p)
					}
				}
			}
		}
	}
	return af, nil
}

func (d StateDir) writeAuth(af *authFile) error {
	b, err := json.Marshal(af.auth)
	if err != nil {
		return err
	}
	af.all["auth"] = b
	return writeJSON(d.authPath(), af.all)
}

// longestRoot finds the entry whose root is the longest prefix of u, as
// devpi-client does for several servers on one host.
func longestRoot(entries map[string][][2]string, u string) string {
	best := ""
	for root := range entries {
		r := strings.TrimSuffix(root, "/") + "/"
		if strings.HasPrefix(strings.TrimSuffix(u, "/")+"/", r) && len(r) > len(best) {
			best = root
		}
	}
	return best
}

// Auth returns the session for root: user's when user is set, else the
// most recent one.
func (d StateDir) Auth(root, user string) (Auth, bool, error) {
	af, err := d.readAuth()
	if err != nil {
		return Auth{}, false, err
	}
	key := longestRoot(af.auth, root)
	for _, p := range af.auth[key] {
		if user == "" || p[0] == user {
			return Auth{User: p[0], Secret: p[1]}, true, nil
		}
	}
	return Auth{}, false, nil
}

// SetAuth makes (user, secret) the most recent session for root, keeps the
// others (sorted) and makes user the current one in current.json, as
// devpi-client's set_auth does: devpi-client sends the credentials of the
// current.json user only.
func (d StateDir) SetAuth(root string, a Auth) error {
	af, err := d.readAuth()
	if err != nil {
		return err
	}
	var others [][2]string
	for _, p := range af.auth[root] {
		if p[0] != a.User {
			others = append(others, p)
		}
	}
	sort.Slice(others, func(i, j int) bool { return others[i][0] < others[j][0] })
	af.auth[root] = append([][2]string{{a.User, a.Secret}}, others...)
	if err := d.writeAuth(af); err != nil {
		return err
	}
	cur, err := readJSON(d.currentPath())
	if err != nil {
		return err
	}
	cur["username"], _ = json.Marshal(a.User)
	return writeJSON(d.currentPath(), cur)
}

// ReplaceAuth swaps user's secret for root in place, only if it is still
// old: nothing else in auth.json or current.json moves, so a refresh never
// changes which user or server devpi-client uses. It reports whether it
// replaced anything.
func (d StateDir) ReplaceAuth(root, user, old, secret string) (bool, error) {
	af, err := d.readAuth()
	if err != nil {
		return false, err
	}
	key := longestRoot(af.auth, root)
	for i, p := range af.auth[key] {
		if p[0] == user && p[1] == old {
			af.auth[key][i][1] = secret
			return true, d.writeAuth(af)
		}
	}
	return false, nil
}

// DeleteAuth removes user's session for root (the most recent when user is
// empty) and reports whether there was one.
func (d StateDir) DeleteAuth(root, user string) (string, bool, error) {
	af, err := d.readAuth()
	if err != nil {
		return "", false, err
	}
	key := longestRoot(af.auth, root)
	list := af.auth[key]
	for i, p := range list {
		if user == "" || p[0] == user {
			af.auth[key] = append(list[:i:i], list[i+1:]...)
			return p[0], true, d.writeAuth(af)
		}
	}
	return "", false, nil
}

// FindSession finds a login session for root in dirs, in order: callers
// pass devpi-credd's own state first, then devpi-client's, so that a
// devpi-client user need not log in twice. In each, the session is the
// current user's ($DEVPI_USER, else current.json's username), as
// devpi-client picks it; only without one, the most recent.
func FindSession(root string, getenv func(string) string, dirs ...StateDir) (Auth, bool, error) {
	for _, d := range dirs {
		user, err := d.CurrentUser(getenv)
		if err != nil {
			return Auth{}, false, err
		}
		if auth, ok, err := d.Auth(root, user); err != nil || ok {
			return auth, ok, err
		}
	}
	return Auth{}, false, nil
}

// OtherServerError: devpi-client uses another server than the one a login
// was for.
type OtherServerError struct{ Current, Root string }

func (e *OtherServerError) Error() string {
	return fmt.Sprintf("devpi-client uses %s, not %s: run 'devpi use %s' first", e.Current, e.Root, e.Root)
}

// CanLogin refuses, with an *OtherServerError, a login for root while
// devpi-client uses another server: devpi-client keeps one current server
// and user, and logging it in elsewhere would log it out where it is.
func (d StateDir) CanLogin(root string) error {
	cur, err := d.Root()
	if err != nil {
		return err
	}
	if cur != "" && cur != root {
		return &OtherServerError{Current: cur, Root: root}
	}
	return nil
}

// Login logs devpi-client in at root with auth, as devpi-tokens'
// token-login does: root becomes the current server when there is none,
// and auth the most recent session there. See CanLogin.
func (d StateDir) Login(root string, auth Auth) error {
	if err := d.CanLogin(root); err != nil {
		return err
	}
	cur, err := d.Root()
	if err != nil {
		return err
	}
	if cur == "" {
		if err := d.SetRoot(root); err != nil {
			return fmt.Errorf("logging devpi-client in: %w", err)
		}
	}
	if err := d.SetAuth(root, auth); err != nil {
		return fmt.Errorf("logging devpi-client in: %w", err)
	}
	return nil
}
