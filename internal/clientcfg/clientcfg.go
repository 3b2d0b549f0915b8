// Package clientcfg is what a client reads of devpi-credd's config: where
// the daemon's socket is, and which servers it serves. It reads those keys
// only, with go-toml and no viper: the keyring helper is a fresh process
// for every lookup, and a config with a mistake elsewhere (which the daemon
// refuses while its previous config keeps serving) still says where the
// daemon is.
package clientcfg

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"path/filepath"

	"github.com/pelletier/go-toml/v2"

	"github.com/devpi-credd/devpi-credd/internal/msg"
	"github.com/devpi-credd/devpi-credd/internal/safefile"
	"github.com/devpi-credd/devpi-credd/internal/safeurl"
	"github.com/devpi-credd/devpi-credd/internal/xdg"
)

// MaxSize bounds a config file.
const MaxSize = 1 << 20

// Config is the client's view of the config.
type Config struct {
	// Socket is $DEVPI_CREDD_SOCKET, else the config's socket, else the
	// default: where the daemon listens.
	Socket string
	// Roots are the configured servers' root URLs; Found is whether a
	// config file was there to name them.
	Roots []*url.URL
	Found bool
}

// Load reads the config at path. It always returns a Config with a
// socket: on an error (the file cannot be read or parsed), the default
// one, and the error says why.
func Load(path string, getenv func(string) string) (*Config, error) {
	c := &Config{Socket: xdg.Socket(getenv)}
	data, _, err := safefile.Read(path, MaxSize)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, err
	}
	var f struct {
		Socket  string `toml:"socket"`
		Servers map[string]struct {
			URL string `toml:"url"`
		} `toml:"servers"`
	}
	if err := toml.Unmarshal(data, &f); err != nil {
		return c, fmt.Errorf("%s: %s", path, msg.OneLine(err.Error()))
	}
	c.Found = true
	for _, s := range f.Servers {
		if u, err := safeurl.ParseRoot(s.URL); err == nil {
			c.Roots = append(c.Roots, u)
		}
	}
	switch {
	case getenv("DEVPI_CREDD_SOCKET") != "" || f.Socket == "":
	case !filepath.IsAbs(f.Socket):
		return c, fmt.Errorf("%s: socket %q must be absolute", path, f.Socket)
	default:
		c.Socket = f.Socket
	}
	return c, nil
}

// Serves reports whether service (a URL, host[:port] or
// scheme://host[:port]) belongs to a configured server, as a mint would
// match it.
func (c *Config) Serves(service string) bool {
	u, err := safeurl.ParseService(service)
	if err != nil {
		return false
	}
	_, ok := safeurl.Match(c.Roots, u)
	return ok
}
