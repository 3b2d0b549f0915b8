package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/devpi-credd/devpi-credd/config"
	"github.com/devpi-credd/devpi-credd/devpi"
	"github.com/devpi-credd/devpi-credd/internal/safefile"
	"github.com/devpi-credd/devpi-credd/localapi"
	"github.com/devpi-credd/devpi-credd/store"
	"github.com/devpi-credd/devpi-credd/token"
)

// Options configure a Daemon. Zero values get sane defaults.
type Options struct {
	ConfigPath string
	// Config, when set, is used instead of reading ConfigPath, and is never
	// reloaded (devpi-credd exec builds one in memory).
	Config  *config.Config
	Getenv  func(string) string
	Logger  *slog.Logger
	Version string
	Now     func() time.Time
	// HTTP is used to look up index bases on the servers.
	HTTP *http.Client
	// Backend picks where a server's root token lives; the default is the
	// file or keychain the config names.
	Backend func(config.Server) store.Backend
	// RefreshEvery is how often devpi-client logins are checked (default
	// a minute).
	RefreshEvery time.Duration
	// LockFile, when set, keeps the lock across restarts: it exists while
	// the daemon is locked.
	LockFile string
}

// Daemon serves the local API. Its config and the root tokens that config
// names are one snapshot, swapped whole on reload, so a request never pairs
// a new config with old tokens or sees a half-loaded state.
type Daemon struct {
	opts    Options
	log     *slog.Logger
	started time.Time

	state    atomic.Pointer[state]
	cfgErr   atomic.Pointer[string]
	reloadMu sync.Mutex // serialises reloads, never held by requests
	minted   atomic.Int64
	refused  atomic.Int64
	// locked: no mints until unlocked (devpi-credd lock, e.g. when leaving
	// the machine or after a suspected leak).
	locked    atomic.Bool
	perServer sync.Map // server name -> *atomic.Int64

	// auditMu is held shared by every audit write and exclusively to swap
	// or reopen the file, so no line goes to a closed file.
	auditMu sync.RWMutex
	audit   *auditLog

	bases basesCache
	spent budgets
}

// state is one consistent view: a config and its servers' root tokens.
type state struct {
	cfg   *config.Config
	roots map[string]*rootState
}

type rootState struct {
	tok   *token.Token
	err   error
	store string
}

// New loads the config at opts.ConfigPath; an invalid config is an error
// here, and only here: later reloads keep the old one instead.
func New(opts Options) (*Daemon, error) {
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.HTTP == nil {
		opts.HTTP = devpi.DefaultHTTPClient()
		opts.HTTP.Timeout = 10 * time.Second
	}
	if opts.Backend == nil {
		opts.Backend = config.Server.Backend
	}
	if opts.RefreshEvery == 0 {
		opts.RefreshEvery = time.Minute
	}
	d := &Daemon{opts: opts, log: opts.Logger, started: opts.Now()}
	d.bases.m = map[string]basesEntry{}
	cfg := opts.Config
	if cfg == nil {
		var err error
		if cfg, err = config.Load(opts.ConfigPath, opts.Getenv); err != nil {
			return nil, err
		}
	}
	a, err := openAudit(cfg.AuditLog)
	if err != nil {
		return nil, err
	}
	d.audit = a
	d.state.Store(d.withRoots(cfg, nil))
	if opts.LockFile != "" {
		if _, err := os.Stat(opts.LockFile); err == nil {
			d.locked.Store(true)
			d.log.Warn("locked (since before this start): 'devpi-credd unlock' lets it mint", "lock_file", opts.LockFile)
		}
	}
	return d, nil
}

// Config returns the config in force.
func (d *Daemon) Config() *config.Config { return d.state.Load().cfg }

// withRoots reads the root token of every server of cfg into a new state;
// old, when set, is the state it replaces, to log only what changed.
func (d *Daemon) withRoots(cfg *config.Config, old *state) *state {
	next := &state{cfg: cfg, roots: make(map[string]*rootState, len(cfg.Servers))}
	for _, s := range cfg.Servers {
		b := d.opts.Backend(s)
		tok, err := b.Load()
		rs := &rootState{tok: tok, err: err, store: b.String()}
		next.roots[s.Name] = rs
		var prev *rootState
		if old != nil {
			prev = old.roots[s.Name]
		}
		switch {
		case err != nil && (prev == nil || prev.err == nil || prev.err.Error() != err.Error()):
			d.log.Warn("root token unavailable", "server", s.Name, "err", err)
		case err == nil && (prev == nil || prev.tok == nil || !prev.tok.Equal(tok)):
			d.log.Info("root token loaded", "server", s.Name, "token", tok, "store", rs.store)
		}
	}
	return next
}

// reloadRoots reads the root tokens again under the config in force.
func (d *Daemon) reloadRoots() {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	old := d.state.Load()
	d.state.Store(d.withRoots(old.cfg, old))
}

// reloadConfig loads the config file again. A config that does not load or
// validate is logged and ignored: the previous one keeps serving.
func (d *Daemon) reloadConfig() bool {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	oldState := d.state.Load()
	old := oldState.cfg
	cfg, err := config.Load(d.opts.ConfigPath, d.opts.Getenv)
	if err == nil && len(cfg.Servers) == 0 && len(old.Servers) > 0 {
		// What a reader sees of a config cut short mid-save: keep serving.
		err = fmt.Errorf("%s names no servers; keeping the previous config (remove the servers one by one, or restart)", d.opts.ConfigPath)
	}
	if err != nil {
		msg := err.Error()
		if prev := d.cfgErr.Load(); prev == nil || *prev != msg {
			d.log.Error("config not reloaded; the previous one keeps serving", "err", msg)
		}
		d.cfgErr.Store(&msg)
		return false
	}
	d.cfgErr.Store(nil)
	if cfg.Socket != old.Socket {
		d.log.Warn("socket changes take effect on restart", "socket", old.Socket, "new", cfg.Socket)
		cfg.Socket = old.Socket
	}
	if cfg.AuditLog != old.AuditLog {
		if err := d.reopenAudit(cfg.AuditLog); err != nil {
			d.log.Error("keeping the old audit log", "err", err)
			cfg.AuditLog = old.AuditLog
		}
	}
	d.state.Store(d.withRoots(cfg, oldState))
	d.log.Info("config reloaded", "servers", len(cfg.Servers))
	return true
}

// reopenAudit opens path and swaps it in once no write is in flight; on
// SIGHUP with the same path, this is what log rotation needs.
func (d *Daemon) reopenAudit(path string) error {
	a, err := openAudit(path)
	if err != nil {
		return err
	}
	d.auditMu.Lock()
	prev := d.audit
	d.audit = a
	d.auditMu.Unlock()
	return prev.Close()
}

func (d *Daemon) writeAudit(e auditEntry) {
	d.auditMu.RLock()
	err := d.audit.write(e)
	d.auditMu.RUnlock()
	if err != nil {
		d.log.Error("audit log write failed", "err", err)
	}
}

type peerKey struct{}

// Handler is the local API, for a server whose connections carry a Peer in
// their context (see Serve).
func (d *Daemon) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+localapi.PathCredentials, d.handleCredentials)
	mux.HandleFunc("GET "+localapi.PathStatus, d.handleStatus)
	mux.HandleFunc("POST "+localapi.PathLock, func(w http.ResponseWriter, r *http.Request) { d.setLocked(w, r, true) })
	mux.HandleFunc("POST "+localapi.PathUnlock, func(w http.ResponseWriter, r *http.Request) { d.setLocked(w, r, false) })
	return d.permit(mux)
}

// permit answers only the daemon's own user, root and the configured
// uids; everyone else gets 403 and an audit line.
func (d *Daemon) permit(next http.Handler) http.Handler {
	own := os.Getuid()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		peer, _ := r.Context().Value(peerKey{}).(Peer)
		// Where the kernel can say who calls, an unknown caller is refused.
		if !peer.Known && peerCredentials {
			d.refused.Add(1)
			d.writeAudit(auditEntry{Time: d.opts.Now().UTC(), Event: "refuse", Peer: peer, Reason: "caller unknown"})
			writeError(w, http.StatusForbidden, localapi.CodeForbidden, "cannot tell who is calling: refused")
			return
		}
		if peer.Known && peer.UID != own && peer.UID != 0 && !contains(d.Config().AllowUIDs, peer.UID) {
			d.refused.Add(1)
			d.writeAudit(auditEntry{Time: d.opts.Now().UTC(), Event: "refuse", Peer: peer, Reason: "uid not allowed"})
			writeError(w, http.StatusForbidden, localapi.CodeForbidden, fmt.Sprintf("uid %d may not use this daemon (it serves uid %d)", peer.UID, own))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func contains(xs []int, x int) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, localapi.Error{Error: msg, Code: code})
}

// apiError is a refusal with its HTTP status.
type apiError struct {
	status int
	code   string
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func (d *Daemon) handleCredentials(w http.ResponseWriter, r *http.Request) {
	peer, _ := r.Context().Value(peerKey{}).(Peer)
	var req localapi.CredentialsRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	if err := dec.Decode(&req); err != nil {
		d.refused.Add(1)
		const msg = "the request is not a JSON credentials request"
		d.writeAudit(auditEntry{Time: d.opts.Now().UTC(), Event: "refuse", Peer: peer, Reason: msg})
		writeError(w, http.StatusBadRequest, localapi.CodeBadRequest, msg)
		return
	}
	creds, err := d.MintFor(r.Context(), req, peer, "")
	var aerr *apiError
	if errors.As(err, &aerr) {
		writeError(w, aerr.status, aerr.code, aerr.msg)
		return
	}
	writeJSON(w, http.StatusOK, creds)
}

// MintFor mints for req on behalf of peer and writes the audit line, minted
// or refused; note, when set, goes into that line.
func (d *Daemon) MintFor(ctx context.Context, req localapi.CredentialsRequest, peer Peer, note string) (*localapi.Credentials, error) {
	var creds *localapi.Credentials
	var entry auditEntry
	var aerr *apiError
	if budget := d.Config().MintBudget; !d.spent.allow(peer, budget, d.opts.Now()) {
		entry = auditEntry{Time: d.opts.Now().UTC(), Event: "mint", URL: redact(req.URL)}
		aerr = &apiError{http.StatusTooManyRequests, localapi.CodeBudget, fmt.Sprintf("over the mint budget of %d tokens a minute for this program (mint_budget)", budget)}
	} else {
		creds, entry, aerr = d.mint(ctx, req)
	}
	entry.Peer = peer
	if note != "" {
		entry.Note = note
	}
	if aerr != nil {
		d.refused.Add(1)
		entry.Event, entry.Reason = "refuse", aerr.msg
		d.writeAudit(entry)
		d.log.Info("refused", "url", entry.URL, "reason", aerr.msg, "peer_uid", peer.UID, "peer_pid", peer.PID)
		return nil, aerr
	}
	d.writeAudit(entry)
	if d.log.Enabled(ctx, slog.LevelDebug) {
		d.log.Debug("minted", "server", entry.Server, "op", entry.Op, "token_id", entry.TokenID, "caveats", entry.Caveats, "peer_uid", peer.UID, "peer_pid", peer.PID)
	}
	return creds, nil
}

// Self is this process as an audit line's caller.
func Self(what string) Peer {
	exe, _ := os.Executable()
	return Peer{UID: os.Getuid(), PID: os.Getpid(), Exe: exe + " (" + what + ")", Known: true}
}

// mint scopes and derives a token for req. It returns the audit entry for
// the caller to complete and write, whether it minted or refused.
func (d *Daemon) mint(ctx context.Context, req localapi.CredentialsRequest) (*localapi.Credentials, auditEntry, *apiError) {
	now := d.opts.Now()
	st := d.state.Load()
	cfg := st.cfg
	entry := auditEntry{Time: now.UTC(), Event: "mint", URL: redact(req.URL)}
	if d.locked.Load() {
		return nil, entry, &apiError{http.StatusLocked, localapi.CodeLocked, "the daemon is locked: 'devpi-credd unlock' lets it mint again"}
	}
	u, err := ParseServiceURL(req.URL)
	if err != nil {
		return nil, entry, &apiError{http.StatusBadRequest, localapi.CodeBadRequest, err.Error()}
	}
	u.RawQuery, u.Fragment = "", ""
	entry.URL = u.String()
	srv, ok := matchServer(cfg, u)
	if !ok {
		return nil, entry, &apiError{http.StatusNotFound, localapi.CodeNotFound, "no configured server matches " + entry.URL}
	}
	entry.Server = srv.Name
	if u.Scheme == "" {
		u.Scheme = srv.URL.Scheme
	}
	ttl := cfg.DefaultTTL
	if req.TTL != "" {
		// Expiries are whole seconds: under one second the token would be
		// dead on arrival.
		if ttl, err = time.ParseDuration(req.TTL); err != nil || ttl < time.Second {
			return nil, entry, &apiError{http.StatusBadRequest, localapi.CodeBadRequest, fmt.Sprintf("ttl %q is not a duration of at least 1s, such as \"2m\"", req.TTL)}
		}
	}
	if req.Session {
		if req.TTL == "" {
			ttl = cfg.MaxSessionTTL
		}
		ttl = min(ttl, cfg.MaxSessionTTL)
	} else {
		ttl = min(ttl, cfg.MaxTTL)
	}
	rs := st.roots[srv.Name]
	if rs == nil || rs.err != nil {
		reason := "no root token loaded"
		if rs != nil {
			reason = rs.err.Error()
		}
		return nil, entry, &apiError{http.StatusServiceUnavailable, localapi.CodeUnavailable, fmt.Sprintf("no usable token for server %s: %s", srv.Name, reason)}
	}
	root := rs.tok
	entry.User, entry.TokenID = root.User(), root.ID()
	target, err := Classify(srv.URL, u)
	if err != nil {
		return nil, entry, &apiError{http.StatusBadRequest, localapi.CodeBadRequest, err.Error()}
	}
	if req.Session {
		target = Target{Op: OpSession}
	}
	entry.Op = string(target.Op)
	var bases []string
	if target.Op == OpRead && srv.ReadScope == "server" {
		target.Index, target.Project = "", ""
	}
	if target.Op == OpRead && target.Index != "" {
		// Without the bases a read token would fail on inherited files;
		// a broader token instead would be more than was asked: say why.
		if bases, err = d.bases.lookup(ctx, d.opts.HTTP, srv, root, target.Index, now); err != nil {
			if devpi.IsStatus(err, http.StatusNotFound) {
				return nil, entry, &apiError{http.StatusNotFound, localapi.CodeRefused, fmt.Sprintf("index %s does not exist on server %s", target.Index, srv.Name)}
			}
			return nil, entry, &apiError{http.StatusBadGateway, localapi.CodeUnavailable, fmt.Sprintf("cannot look up the bases of %s on server %s: %s", target.Index, srv.Name, oneLine(err.Error()))}
		}
	}
	p, err := plan(root, srv, target, bases, req.Username, now, ttl, cfg.Deadline)
	if err != nil {
		return nil, entry, &apiError{http.StatusForbidden, localapi.CodeRefused, err.Error()}
	}
	tok, err := root.Derive(p.Caveats...)
	if err != nil {
		return nil, entry, &apiError{http.StatusInternalServerError, localapi.CodeRefused, err.Error()}
	}
	caveats := make([]string, len(p.Caveats))
	for i, c := range p.Caveats {
		caveats[i] = c.Caveat()
	}
	entry.Caveats, entry.Expires = caveats, p.Expires.Unix()
	d.minted.Add(1)
	n, _ := d.perServer.LoadOrStore(srv.Name, new(atomic.Int64))
	n.(*atomic.Int64).Add(1)
	return &localapi.Credentials{
		Username: root.User(),
		Password: tok.Reveal(),
		Expires:  p.Expires.Unix(),
		Server:   srv.Name,
		TokenID:  root.ID(),
		Caveats:  caveats,
	}, entry, nil
}

func (d *Daemon) setLocked(w http.ResponseWriter, r *http.Request, lock bool) {
	peer, _ := r.Context().Value(peerKey{}).(Peer)
	if d.opts.LockFile != "" {
		var err error
		if lock {
			err = safefile.Write(d.opts.LockFile, []byte("locked by 'devpi-credd lock'; 'devpi-credd unlock' removes this file\n"), 0o600)
		} else if err = os.Remove(d.opts.LockFile); errors.Is(err, fs.ErrNotExist) {
			err = nil
		}
		if err != nil {
			writeError(w, http.StatusInternalServerError, localapi.CodeUnavailable, "keeping the lock: "+err.Error())
			return
		}
	}
	if d.locked.Swap(lock) != lock {
		event := map[bool]string{true: "lock", false: "unlock"}[lock]
		d.writeAudit(auditEntry{Time: d.opts.Now().UTC(), Event: event, Peer: peer})
		d.log.Info(event, "peer_uid", peer.UID, "peer_pid", peer.PID)
	}
	writeJSON(w, http.StatusOK, d.Status())
}

func (d *Daemon) handleStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, d.Status())
}

// Status reports the daemon's state.
func (d *Daemon) Status() localapi.Status {
	snap := d.state.Load()
	cfg := snap.cfg
	st := localapi.Status{
		PID: os.Getpid(), Version: d.opts.Version, Started: d.started, Config: cfg.Path,
		Socket: cfg.Socket, AuditLog: cfg.AuditLog, DefaultTTL: cfg.DefaultTTL.String(),
		MaxTTL: cfg.MaxTTL.String(), MaxSession: cfg.MaxSessionTTL.String(), Locked: d.locked.Load(), Minted: d.minted.Load(), Refused: d.refused.Load(),
		Servers: []localapi.ServerStatus{},
	}
	if e := d.cfgErr.Load(); e != nil {
		st.ConfigError = *e
	}
	roots := snap.roots
	for _, s := range cfg.Servers {
		ss := localapi.ServerStatus{Name: s.Name, URL: s.URL.String(), ReadScope: s.ReadScope}
		if n, ok := d.perServer.Load(s.Name); ok {
			ss.Minted = n.(*atomic.Int64).Load()
		}
		if rs := roots[s.Name]; rs != nil {
			ss.Store = rs.store
			if rs.err != nil {
				ss.Error = rs.err.Error()
			} else {
				ss.User, ss.TokenID = rs.tok.User(), rs.tok.ID()
				if e := rs.tok.Scope().Expires; e != nil {
					ss.Expires = e.Unix()
				}
			}
		}
		st.Servers = append(st.Servers, ss)
	}
	return st
}

// Serve answers the local API on l until ctx ends, then stops gracefully.
func (d *Daemon) Serve(ctx context.Context, l net.Listener) error {
	srv := &http.Server{
		Handler: d.Handler(),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, peerKey{}, peerOf(c))
		},
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(d.log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = srv.Close()
	}
	return err
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// Close releases the audit log.
func (d *Daemon) Close() error {
	d.auditMu.Lock()
	defer d.auditMu.Unlock()
	return d.audit.Close()
}

// Run listens on the configured socket, serves until ctx ends, and reloads
// the config and tokens when their files change or reload receives (SIGHUP).
// The socket is removed when Run returns.
func (d *Daemon) Run(ctx context.Context, reload <-chan struct{}) error {
	cfg := d.Config()
	l, err := listen(cfg.Socket, len(cfg.AllowUIDs) > 0)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	watchErr := make(chan error, 1)
	go func() {
		if d.opts.Config != nil {
			watchErr <- nil // a config in memory: nothing to watch
			return
		}
		watchErr <- d.watch(ctx, reload)
	}()
	refreshed := make(chan struct{})
	go func() { defer close(refreshed); d.refreshDevpiClient(ctx, d.opts.RefreshEvery) }()
	defer func() { <-refreshed }()
	d.log.Info("serving", "socket", cfg.Socket, "config", cfg.Path, "servers", len(cfg.Servers), "audit_log", cfg.AuditLog, "peer_check", PeerCheck)
	err = d.Serve(ctx, l)
	cancel()
	if werr := <-watchErr; werr != nil && err == nil {
		err = werr
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
