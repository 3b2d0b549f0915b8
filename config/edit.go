package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strconv"

	"github.com/devpi-credd/devpi-credd/internal/safefile"
)

const header = `# devpi-credd configuration; see 'devpi-credd serve --help' and docs/config.md.
# socket = "..."        # default $XDG_RUNTIME_DIR/devpi-credd/socket
# default_ttl = "5m"
# max_ttl = "1h"
# audit_log = "..."     # default $XDG_STATE_HOME/devpi-credd/audit.log
`

// EnsureServer makes sure the file at path names a server with root as its
// url: it returns that server's name, or appends a [servers.NAME] section
// (creating the file if needed) and reports added. Appending keeps the
// user's comments and layout; the file is replaced atomically.
func EnsureServer(path, name string, root *url.URL, keychain bool, getenv func(string) string) (string, bool, error) {
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", false, err
	}
	data, got, added, err := AddServer(path, data, name, root, keychain, getenv)
	if err != nil || !added {
		return got, false, err
	}
	if err := safefile.Write(path, data, 0o600); err != nil {
		return "", false, fmt.Errorf("writing config: %w", err)
	}
	return got, true, nil
}

// AddServer is EnsureServer on the bytes of the file at path (none: no
// file yet), for a caller that writes them itself: it returns them with
// the section appended and added set, or as they are with the name of the
// server that has root already.
func AddServer(path string, data []byte, name string, root *url.URL, keychain bool, getenv func(string) string) ([]byte, string, bool, error) {
	if len(data) == 0 {
		data = []byte(header)
	} else {
		c, err := Parse(path, data, getenv)
		if err != nil {
			return nil, "", false, fmt.Errorf("not adding server %s: fix the config first: %w", name, err)
		}
		for _, s := range c.Servers {
			if s.URL.String() == root.String() {
				return data, s.Name, false, nil
			}
		}
		if _, taken := c.Server(name); taken {
			return nil, "", false, fmt.Errorf("the config already has a server %q with another url; choose another --name", name)
		}
	}
	if data[len(data)-1] != '\n' {
		data = append(data, '\n')
	}
	data = fmt.Appendf(data, "\n[servers.%s]\nurl = %s\n", name, strconv.Quote(root.String()))
	if keychain {
		data = append(data, "keychain = true\n"...)
	}
	if _, err := Parse(path, data, getenv); err != nil {
		return nil, "", false, fmt.Errorf("adding server %s: %w", name, err)
	}
	return data, name, true, nil
}
