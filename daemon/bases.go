package daemon

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/devpi-credd/devpi-credd/config"
	"github.com/devpi-credd/devpi-credd/devpi"
	"github.com/devpi-credd/devpi-credd/token"
)

// basesTTL bounds how stale an index's bases may be: an index whose bases
// change is served with the old ones for at most this long.
const basesTTL = time.Minute

// basesCache remembers each index's transitive bases, so a read mint costs
// a request to the server at most once a minute per index.
type basesCache struct {
	mu sync.Mutex
	m  map[string]basesEntry
}

type basesEntry struct {
	bases []string
	at    time.Time
}

// lookup returns the transitive bases of index, asking the server with a
// one-minute read-only token derived from root.
func (c *basesCache) lookup(ctx context.Context, hc *http.Client, srv *config.Server, root *token.Token, index string, now time.Time) ([]string, error) {
	key := srv.Name + " " + srv.URL.String() + " " + index
	c.mu.Lock()
	e, ok := c.m[key]
	c.mu.Unlock()
	if ok && now.Sub(e.at) < basesTTL {
		return e.bases, nil
	}
	ro, _ := token.Allowed("pkg_read")
	lookupTok, err := root.Derive(token.Expires(now.Add(time.Minute)), ro)
	if err != nil {
		return nil, err
	}
	client := &devpi.Client{Root: srv.URL, HTTP: hc, UserAgent: "devpi-credd",
		Auth: &devpi.Auth{User: root.User(), Secret: lookupTok.Reveal()}}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	seen := map[string]bool{index: true}
	queue := []string{index}
	var bases []string
	for len(queue) > 0 && len(seen) < 64 {
		ix := queue[0]
		queue = queue[1:]
		ic, err := client.Index(ctx, ix)
		if err != nil {
			return nil, err
		}
		for _, b := range ic.Bases {
			if !seen[b] {
				seen[b] = true
				bases = append(bases, b)
				queue = append(queue, b)
			}
		}
	}
	c.mu.Lock()
	c.m[key] = basesEntry{bases: bases, at: now}
	c.mu.Unlock()
	return bases, nil
}
