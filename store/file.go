package store

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/devpi-credd/devpi-credd/internal/safefile"
	"github.com/devpi-credd/devpi-credd/token"
)

// ErrNotFound is wrapped when no token is stored under a name.
var ErrNotFound = errors.New("no token stored")

// File is a token kept in one file: the token's text and a newline, nothing
// else, so a Vault Agent sink or a Kubernetes secret can be the file.
type File struct {
	Path string
}

// MaxTokenFile bounds a token file: a token is a few hundred bytes.
const MaxTokenFile = 64 << 10

// Load reads and parses the token. It refuses a file that group or others
// may read, and anything but a regular file (a FIFO would block the
// daemon's reloads forever).
func (f File) Load() (*token.Token, error) {
	b, err := safefile.ReadPrivate(f.Path, MaxTokenFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%w at %s", ErrNotFound, f.Path)
	case errors.Is(err, safefile.ErrTooOpen), errors.Is(err, safefile.ErrNotRegular), errors.Is(err, safefile.ErrTooLarge):
		return nil, fmt.Errorf("refusing token file: %w", err)
	case err != nil:
		return nil, fmt.Errorf("reading token file: %w", err)
	}
	t, err := token.Parse(string(b))
	if err != nil {
		return nil, fmt.Errorf("token file %s: %w", f.Path, err)
	}
	return t, nil
}

// Save replaces the file atomically with mode 0600 in a 0700 directory.
func (f File) Save(t *token.Token) error {
	if err := safefile.Write(f.Path, []byte(t.Reveal()+"\n"), 0o600); err != nil {
		return fmt.Errorf("saving token: %w", err)
	}
	return nil
}

// TokenPath is where the file backend keeps the token of the server called
// name, under devpi-credd's state directory.
func TokenPath(stateDir, name string) string {
	return filepath.Join(stateDir, "tokens", name+".token")
}

func nameChar(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-'
}

// ServerName makes a default name for a server from its root URL: host,
// port and path in lower-case letters, digits and dashes, which are safe in
// a file name and as a config key (the config reader lower-cases keys and
// would split them at dots).
func ServerName(root *url.URL) string {
	name := strings.ToLower(root.Hostname())
	if p := root.Port(); p != "" {
		name += "-" + p
	}
	if p := strings.Trim(root.Path, "/"); p != "" {
		name += "-" + strings.ToLower(p)
	}
	// Each run of other characters becomes one dash.
	var b strings.Builder
	dash := false
	for _, r := range name {
		if nameChar(r) {
			if dash {
				b.WriteByte('-')
				dash = false
			}
			b.WriteRune(r)
		} else {
			dash = true
		}
	}
	name = strings.Trim(b.String(), "-_")
	if len(name) > 64 {
		name = strings.TrimRight(name[:64], "-_")
	}
	if !ValidName(name) {
		return "default"
	}
	return name
}

// ValidName reports whether name can name a server (and its token file):
// 1 to 64 of a-z, 0-9, '_' and '-', starting with a letter or digit.
func ValidName(name string) bool {
	if name == "" || len(name) > 64 || name[0] == '_' || name[0] == '-' {
		return false
	}
	for _, r := range name {
		if !nameChar(r) {
			return false
		}
	}
	return true
}

// String says where the token is, for status and messages.
func (f File) String() string { return f.Path }

// Backend is where one server's long-lived token lives.
type Backend interface {
	Load() (*token.Token, error)
	Save(*token.Token) error
	Delete() error
	String() string
}

// Delete removes the file; a file that is not there is ErrNotFound.
func (f File) Delete() error {
	if err := os.Remove(f.Path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w at %s", ErrNotFound, f.Path)
		}
		return fmt.Errorf("removing token file: %w", err)
	}
	return nil
}

// Memory is a token held in memory only: devpi-credd exec's, read once from
// a file, standard input or the environment, and gone with the process.
type Memory struct {
	Token *token.Token
}

// Load returns the token.
func (m Memory) Load() (*token.Token, error) {
	if m.Token == nil {
		return nil, ErrNotFound
	}
	return m.Token, nil
}

// Delete forgets nothing: the token lives only as long as the process.
func (m Memory) Delete() error { return nil }

// Save is refused: nothing is written anywhere.
func (m Memory) Save(*token.Token) error { return errors.New("an in-memory token is not saved") }

// String says where the token is.
func (m Memory) String() string { return "memory" }
