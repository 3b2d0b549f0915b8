package daemon

import (
	"context"
	"fmt"
	"net/http"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"

	"github.com/devpi-credd/devpi-credd/config"
	"github.com/devpi-credd/devpi-credd/devpi"
	"github.com/devpi-credd/devpi-credd/token"
)

const (
	// basesTTL bounds how stale an index's bases may be: an index whose
	// bases change is served with the old ones for at most this long.
	basesTTL = time.Minute
	// basesFailTTL: after a failed lookup, mints for that index fail at once
	// for this long instead of each waiting for the server again.
	basesFailTTL = 5 * time.Second
	// maxBases bounds the walk; devpi itself refuses deeper inheritance
	// long before.
	maxBases = 64
	// basesEntries bounds the cache: the least recently used index goes
	// first, so callers naming ever new indexes cannot grow the daemon.
	basesEntries = 1024
)

// basesCache remembers each index's transitive bases, so a read mint costs
// a request to the server at most once a minute per index; concurrent
// misses for one index share one lookup.
type basesCache struct {
	lru    *lru.Cache[string, basesEntry]
	flight singleflight.Group
}

func newBasesCache() *basesCache {
	c, err := lru.New[string, basesEntry](basesEntries)
	if err != nil {
		panic(err) // only for a size below 1
	}
	return &basesCache{lru: c}
}

type basesEntry struct {
	bases []string
	err   error
	at    time.Time
}

// lookup returns the transitive bases of index, asking the server with a
// one-minute read-only token derived from root.
func (c *basesCache) lookup(ctx context.Context, hc *http.Client, srv *config.Server, root *token.Token, index string, now time.Time) ([]string, error) {
	key := srv.Name + " " + srv.URL.String() + " " + root.ID() + " " + index
	e, ok := c.lru.Get(key)
	if ok && e.err == nil && now.Sub(e.at) < basesTTL {
		return e.bases, nil
	}
	if ok && e.err != nil && now.Sub(e.at) < basesFailTTL {
		return nil, e.err
	}
	v, err, _ := c.flight.Do(key, func() (any, error) {
		bases, err := fetchBases(ctx, hc, srv, root, index, now)
		c.lru.Add(key, basesEntry{bases: bases, err: err, at: now})
		return bases, err
	})
	if err != nil {
		return nil, err
	}
	return v.([]string), nil
}

func fetchBases(ctx context.Context, hc *http.Client, srv *config.Server, root *token.Token, index string, now time.Time) ([]string, error) {
	ro, _ := token.Allowed("pkg_read")
	lookupTok, err := root.Derive(token.Expires(now.Add(time.Minute)), ro)
	if err != nil {
		return nil, err
	}
	client := &devpi.Client{Root: srv.URL, HTTP: hc, UserAgent: "devpi-credd",
		Auth: &devpi.Auth{User: root.User(), Secret: lookupTok.Reveal()}}
	// Not the caller's context: a caller that gives up must not fail the
	// lookup that others share.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	seen := map[string]bool{index: true}
	queue := []string{index}
	bases := []string{}
	for len(queue) > 0 {
		ix := queue[0]
		queue = queue[1:]
		ic, err := client.Index(ctx, ix)
		if err != nil {
			return nil, err
		}
		for _, b := range ic.Bases {
			if seen[b] {
				continue
			}
			if len(seen) > maxBases {
				return nil, fmt.Errorf("%s inherits from more than %d indexes", index, maxBases)
			}
			seen[b] = true
			bases = append(bases, b)
			queue = append(queue, b)
		}
	}
	return bases, nil
}
