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
	if len(data) == 0 {
		data = []byte(header)
	} else {
		c, err := Parse(path, data, getenv)
		if err != nil {
			return "", false, fmt.Errorf("not adding server %s: fix the config first: %w", name, err)
		}
		for _, s := range c.Servers {
			if s.URL.String() == root.String() {
				return s.Name, false, nil
			}
		}
		if _, taken := c.Server(name); taken {
			return "", false, fmt.Errorf("the config already has a server %q with another url; choose another --name", name)
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
		return "", false, fmt.Errorf("adding server %s: %w", name, err)
	}
	if err := safefile.Write(path, data, 0o600); err != nil {
		return "", false, fmt.Errorf("writing config: %w", err)
	}
	return name, true, nil
}
