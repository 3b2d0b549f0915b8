package daemon

import (
	"context"
	"time"

	"github.com/devpi-credd/devpi-credd/devpi"
	"github.com/devpi-credd/devpi-credd/localapi"
	"github.com/devpi-credd/devpi-credd/token"
)

// refreshDevpiClient keeps the devpi-client logins that 'devpi-credd
// devpi-login' wrote fresh, for servers with devpi_client = true: when the
// session token in devpi-client's auth.json has less than a third of
// max_session_ttl left, it is replaced in place by a new one. Entries that
// are not derived from this server's root token (a password login, another
// token) are left alone, and devpi-client's current user and server never
// change.
func (d *Daemon) refreshDevpiClient(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		d.refreshDevpiClientOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (d *Daemon) refreshDevpiClientOnce(ctx context.Context) {
	st := d.state.Load()
	cd, err := devpi.ClientDir(d.opts.Getenv)
	if err != nil {
		return
	}
	now := d.opts.Now()
	for _, s := range st.cfg.Servers {
		rs := st.roots[s.Name]
		if !s.DevpiClient || rs == nil || rs.err != nil {
			continue
		}
		root := s.URL.String()
		auth, ok, err := cd.Auth(root, rs.tok.User())
		if err != nil || !ok {
			continue
		}
		cur, err := token.Parse(auth.Secret)
		// Only sessions derived from this server's root token are ours.
		if err != nil || cur.ID() != rs.tok.ID() || cur.User() != rs.tok.User() {
			continue
		}
		exp := cur.Scope().Expires
		if exp == nil || exp.Sub(now) > st.cfg.MaxSessionTTL/3 {
			continue
		}
		creds, err := d.MintFor(ctx, localapi.CredentialsRequest{URL: root, Session: true}, InProcess("devpi-client refresh"), "devpi-client login refreshed")
		if err != nil {
			d.log.Warn("devpi-client login not refreshed", "server", s.Name, "reason", err)
			continue
		}
		if ok, err := cd.ReplaceAuth(root, auth.User, auth.Secret, creds.Password); err != nil || !ok {
			d.log.Warn("devpi-client login not refreshed", "server", s.Name, "err", err, "replaced", ok)
			continue
		}
		d.log.Info("devpi-client login refreshed", "server", s.Name, "expires", time.Unix(creds.Expires, 0).UTC())
	}
}
