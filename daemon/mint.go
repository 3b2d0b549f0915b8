package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/devpi-credd/devpi-credd/config"
	"github.com/devpi-credd/devpi-credd/devpi"
	"github.com/devpi-credd/devpi-credd/internal/msg"
	"github.com/devpi-credd/devpi-credd/internal/safeurl"
	"github.com/devpi-credd/devpi-credd/localapi"
	"github.com/devpi-credd/devpi-credd/token"
)

// MintFor mints for req on behalf of peer and writes the audit line, minted
// or refused; note, when set, goes into that line. A token whose audit line
// cannot be written is not handed out: the audit log fails closed.
func (d *Daemon) MintFor(ctx context.Context, req localapi.CredentialsRequest, peer Peer, note string) (*localapi.Credentials, error) {
	creds, entry, aerr := d.admit(ctx, req, peer)
	entry.Peer = peer
	if note != "" {
		entry.Note = note
	}
	if aerr != nil && aerr.miss {
		d.missed.Add(1)
		if d.log.Enabled(ctx, slog.LevelDebug) {
			d.log.Debug("not ours", "url", entry.URL, "reason", aerr.msg, "peer_uid", peer.UID)
		}
		return nil, aerr
	}
	if aerr != nil && aerr.audited {
		d.refused.Add(1) // its line is written: one per code checked
		return nil, aerr
	}
	if aerr != nil {
		d.refuse(entry, aerr.msg)
		return nil, aerr
	}
	if err := d.writeAudit(entry); err != nil {
		d.refused.Add(1)
		return nil, &apiError{status: http.StatusServiceUnavailable, code: localapi.CodeUnavailable,
			msg: "no token handed out: it cannot be recorded in the audit log (" + msg.OneLine(err.Error()) + "); minting resumes once the log can be written"}
	}
	d.minted.Add(1)
	n, _ := d.perServer.LoadOrStore(entry.Server, new(atomic.Int64))
	n.(*atomic.Int64).Add(1)
	if d.log.Enabled(ctx, slog.LevelDebug) {
		d.log.Debug("minted", "server", entry.Server, "op", entry.Op, "token_id", entry.TokenID, "caveats", entry.Caveats, "peer_uid", peer.UID, "peer_pid", peer.PID)
	}
	return creds, nil
}

// admit checks what peer may ask for before minting: sessions are the
// owner's unless the config grants them to allow_uids, and every caller
// has its mint budget.
func (d *Daemon) admit(ctx context.Context, req localapi.CredentialsRequest, peer Peer) (*localapi.Credentials, auditEntry, *apiError) {
	now := d.opts.Now()
	cfg := d.Config()
	if req.Session && d.classOf(peer, cfg) != classOwner && !cfg.Grants(config.GrantSession) {
		entry := auditEntry{Time: now.UTC(), Event: "mint", URL: safeurl.Redact(req.URL), Op: string(OpSession)}
		return nil, entry, &apiError{status: http.StatusForbidden, code: localapi.CodeForbidden,
			msg: fmt.Sprintf("session tokens are for uid %d and root: uid %d may get scoped tokens only (allow_uids_grant)", d.uid, peer.UID)}
	}
	if budget := cfg.MintBudget; !d.spent.allow(peer, budget, now) {
		entry := auditEntry{Time: now.UTC(), Event: "mint", URL: safeurl.Redact(req.URL)}
		return nil, entry, &apiError{status: http.StatusTooManyRequests, code: localapi.CodeBudget, msg: fmt.Sprintf("over the mint budget of %d tokens a minute for this program (mint_budget)", budget)}
	}
	return d.mint(ctx, req, peer)
}

// InProcess is this process as an audit line's caller, when code in the
// daemon's own process mints (exec and env, the devpi-client refresh);
// what says what for.
func InProcess(what string) Peer {
	exe, _ := os.Executable()
	return Peer{UID: os.Getuid(), PID: os.Getpid(), Exe: exe + " (" + what + ")", Known: true}
}

// mint scopes and derives a token for req. It returns the audit entry for
// the caller to complete and write, whether it minted or refused.
func (d *Daemon) mint(ctx context.Context, req localapi.CredentialsRequest, peer Peer) (*localapi.Credentials, auditEntry, *apiError) {
	now := d.opts.Now()
	st := d.state.Load()
	cfg := st.cfg
	entry := auditEntry{Time: now.UTC(), Event: "mint", URL: safeurl.Redact(req.URL)}
	if d.locked.Load() {
		return nil, entry, &apiError{status: http.StatusLocked, code: localapi.CodeLocked, msg: "the daemon is locked: 'devpi-credd unlock' lets it mint again"}
	}
	u, err := safeurl.ParseService(req.URL)
	if err != nil {
		return nil, entry, &apiError{status: http.StatusBadRequest, code: localapi.CodeBadRequest, msg: err.Error(), miss: true}
	}
	entry.URL = safeurl.Cap(u.String(), safeurl.MaxLogged)
	srv, ok := cfg.Match(u)
	if !ok {
		return nil, entry, &apiError{status: http.StatusNotFound, code: localapi.CodeNotFound, msg: "no configured server matches " + entry.URL, miss: true}
	}
	entry.Server = srv.Name
	if u.Scheme == "" {
		u.Scheme = srv.URL.Scheme
	}
	ttl, aerr := ttlFor(cfg, req)
	if aerr != nil {
		return nil, entry, aerr
	}
	root, err := st.root(srv.Name)
	if err != nil {
		return nil, entry, &apiError{status: http.StatusServiceUnavailable, code: localapi.CodeUnavailable, msg: err.Error()}
	}
	entry.User, entry.TokenID = root.User(), root.ID()
	target, err := Classify(srv.URL, u)
	if err != nil {
		return nil, entry, &apiError{status: http.StatusBadRequest, code: localapi.CodeBadRequest, msg: err.Error()}
	}
	if req.Session {
		target = Target{Op: OpSession}
	}
	entry.Op = string(target.Op)
	if target.Op == OpRead && srv.ReadScope == "server" {
		target.Index, target.Project = "", ""
	}
	bases, aerr := d.basesFor(ctx, srv, root, target, now)
	if aerr != nil {
		return nil, entry, aerr
	}
	// Last before minting, so that a code is spent only on a request that
	// would be served.
	approved, ttlCap, aerr := d.approve(req, target, peer, entry)
	if aerr != nil {
		return nil, entry, aerr
	}
	if ttlCap > 0 {
		ttl = min(ttl, ttlCap)
		entry.Note = "approved with a one-time code"
	}
	p, err := plan(root, srv, target, bases, req.Username, now, ttl, d.opts.Deadline)
	if err != nil {
		return nil, entry, &apiError{status: http.StatusForbidden, code: localapi.CodeRefused, msg: err.Error()}
	}
	if !approved {
		// A session without a code, under approval: no permission to write.
		r, err := token.Allowed(unapprovedSession...)
		if err != nil {
			return nil, entry, &apiError{status: http.StatusInternalServerError, code: localapi.CodeRefused, msg: err.Error()}
		}
		p.Caveats = append(p.Caveats, r)
		entry.Note = "no code: no permission to write"
	}
	tok, err := root.Derive(p.Caveats...)
	if err != nil {
		return nil, entry, &apiError{status: http.StatusInternalServerError, code: localapi.CodeRefused, msg: err.Error()}
	}
	caveats := make([]string, len(p.Caveats))
	for i, c := range p.Caveats {
		caveats[i] = c.Caveat()
	}
	entry.Caveats, entry.Expires = caveats, p.Expires.Unix()
	return &localapi.Credentials{
		Username: root.User(),
		Password: tok.Reveal(),
		Expires:  p.Expires.Unix(),
		Server:   srv.Name,
		TokenID:  root.ID(),
		Caveats:  caveats,
	}, entry, nil
}

// ttlFor is how long the token for req lives: what it asks for (at least a
// second: expiries are whole seconds), else the default; at most max_ttl,
// or max_session_ttl for a session.
func ttlFor(cfg *config.Config, req localapi.CredentialsRequest) (time.Duration, *apiError) {
	ttl := cfg.DefaultTTL
	if req.Session {
		ttl = cfg.MaxSessionTTL
	}
	if req.TTL != "" {
		var err error
		if ttl, err = time.ParseDuration(req.TTL); err != nil || ttl < time.Second {
			return 0, &apiError{status: http.StatusBadRequest, code: localapi.CodeBadRequest, msg: fmt.Sprintf("ttl %q is not a duration of at least 1s, such as \"2m\"", safeurl.Cap(req.TTL, 32))}
		}
	}
	if req.Session {
		return min(ttl, cfg.MaxSessionTTL), nil
	}
	return min(ttl, cfg.MaxTTL), nil
}

// basesFor is the transitive bases of a read target's index: without them
// a read token would fail on inherited files, and a broader token instead
// would be more than was asked; when they cannot be looked up, it says why.
func (d *Daemon) basesFor(ctx context.Context, srv *config.Server, root *token.Token, target Target, now time.Time) ([]string, *apiError) {
	if target.Op != OpRead || target.Index == "" {
		return nil, nil
	}
	bases, err := d.bases.lookup(ctx, d.opts.HTTP, srv, root, target.Index, now)
	switch {
	case err == nil:
		return bases, nil
	case devpi.IsStatus(err, http.StatusNotFound):
		return nil, &apiError{status: http.StatusNotFound, code: localapi.CodeRefused, msg: fmt.Sprintf("index %s does not exist on server %s", target.Index, srv.Name)}
	}
	return nil, &apiError{status: http.StatusBadGateway, code: localapi.CodeUnavailable, msg: fmt.Sprintf("cannot look up the bases of %s on server %s: %s", target.Index, srv.Name, msg.OneLine(err.Error()))}
}
