package exchange

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/devpi-credd/devpi-credd/config"
	"github.com/devpi-credd/devpi-credd/localapi"
	"github.com/devpi-credd/devpi-credd/token"
)

// Minter mints the devpi token for a publisher that matched: the daemon,
// which holds the servers' long-lived tokens.
type Minter interface {
	MintExchange(ctx context.Context, p config.Publisher, maxTTL time.Duration) (*Minted, *Record, error)
}

// Record is what an exchange's audit line says of the token: never the
// token.
type Record struct {
	Server  string
	User    string
	TokenID string
	Caveats []string
	Expires int64
}

// Event is one exchange, minted or refused, for the audit log: never the
// identity token, never the devpi token.
type Event struct {
	// Remote is the caller's address (no port); Via, the trusted proxy's
	// it came through (see ClientAddr).
	Remote    string
	Via       string
	Issuer    string
	Publisher string
	// Claims: the identity's claims that say where it comes from
	// (AuditClaims), as the token has them.
	Claims  map[string]string
	Minted  *Record
	Refused *Refusal
	// Reported: a devpi token a client said it is done with
	// (burn-token), by its user and id.
	Reported *Record
	// Reason, when set, is why, for the operator: what the caller is not
	// told (the server's token, the exchange's files).
	Reason string
}

// AuditClaims are the claims an audit line keeps: which repository or
// project, workflow, ref, commit and run an exchange came from.
var AuditClaims = []string{"repository", "repository_owner_id", "workflow_file", "job_workflow_ref", "ref", "sha", "run_id",
	"environment", "project_path", "ref_path", "pipeline_id", "job_id", "sub"}

// Options configure a Server.
type Options struct {
	Verifier *Verifier
	Replay   Replay
	Minter   Minter
	// Config returns the exchange config in force (reloads swap it).
	Config func() *config.Exchange
	// Audit records an exchange; a minted token whose record fails is not
	// handed out.
	Audit func(Event) error
	Now   func() time.Time
}

// Server answers PyPI's two trusted-publishing paths.
type Server struct {
	opts Options

	mu      sync.Mutex
	budgets map[string]*rate.Limiter
	// minted remembers the tokens this exchange handed out, so that
	// burn-token reports only those: anyone can post any devpi token
	// there, and one it did not mint says only what its caller wrote.
	minted mintedTokens
}

// NewServer makes a Server.
func NewServer(opts Options) *Server {
	return &Server{opts: opts, budgets: map[string]*rate.Limiter{}}
}

// Handler serves PyPI's paths: GET /_/oidc/audience, POST
// /_/oidc/mint-token (and its legacy /_/oidc/github/mint-token), POST
// /_/oidc/burn-token. While the config has no [exchange] (removed on
// reload, the listener open until a restart), every path answers 404
// not-enabled, which PyPI's clients read as "trusted publishing is off".
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathAudience, func(w http.ResponseWriter, r *http.Request) {
		cfg := s.opts.Config()
		if cfg == nil {
			writeJSON(w, errOff.Status, errOff)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"audience": cfg.Audience})
	})
	mux.HandleFunc("POST "+PathMintToken, s.mintToken)
	mux.HandleFunc("POST "+PathMintTokenGitHub, s.mintToken)
	mux.HandleFunc("POST "+PathBurnToken, s.burnToken)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.opts.Config() == nil {
			writeJSON(w, errOff.Status, errOff)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func (s *Server) mintToken(w http.ResponseWriter, r *http.Request) {
	ev := s.event(r)
	minted, key, rf := s.exchange(r, &ev)
	if rf == nil {
		if err := s.opts.Audit(ev); err != nil {
			// Not handed out, so not used: the job may try again.
			if ferr := s.opts.Replay.Forget(key); ferr != nil {
				err = fmt.Errorf("%w; and forgetting the identity token's record: %v", err, ferr)
			}
			ev.Reason = "the audit log: " + err.Error()
			rf = refusal(http.StatusServiceUnavailable, CodeUnavailable, "no token handed out: the exchange cannot record it in its audit log")
		}
	}
	if rf == nil {
		m := ev.Minted // what a reported_used line says: not the caveats
		s.minted.add(minted.Token, Record{Server: m.Server, User: m.User, TokenID: m.TokenID, Expires: m.Expires}, s.opts.Now())
	}
	if rf != nil {
		ev.Refused, ev.Minted = rf, nil
		if ev.Reason == "" {
			ev.Reason = rf.Detail
		}
		_ = s.opts.Audit(ev)
		writeJSON(w, rf.Status, rf)
		return
	}
	writeJSON(w, http.StatusOK, minted)
}

// burnToken answers uv's report, after publishing, that it is done with
// a token. A devpi token cannot be revoked alone (deleting it on the
// server deletes the long-lived token it was derived from), so nothing is
// revoked: the audit log records that a token this exchange minted was
// reported used, by the user and id it was minted with, once; and the
// answer says it lives until it expires. Any other devpi token (made by
// anyone, or minted by another replica) gets the same answer but is
// audited as a refusal, within its caller's budget of refusal lines, so
// that forged reports name no one and cannot crowd out real ones. uv reads
// any answer but 202 as a failure to revoke, and warns.
func (s *Server) burnToken(w http.ResponseWriter, r *http.Request) {
	ev := s.event(r)
	raw, ok := readToken(r)
	now := s.opts.Now()
	if rec, mine := s.minted.take(raw, now); ok && mine {
		ev.Reported = &rec
		_ = s.opts.Audit(ev)
		writeBurnt(w, time.Unix(rec.Expires, 0))
		return
	}
	var tok *token.Token
	var err error
	if ok {
		tok, err = token.Parse(raw)
	}
	if !ok || err != nil {
		rf := refusal(422, CodeInvalidPayload, `the request is not {"token": "<devpi token>"}`)
		ev.Refused, ev.Reason = rf, rf.Errors[0].Description
		_ = s.opts.Audit(ev)
		writeJSON(w, rf.Status, rf)
		return
	}
	ev.Refused = errNotMinted
	_ = s.opts.Audit(ev)
	var exp time.Time
	if e := tok.Scope().Expires; e != nil {
		exp = *e
	}
	writeBurnt(w, exp)
}

// errNotMinted is the audit log's record of a burn-token report of a
// token this exchange did not mint; the caller is answered 202 as for
// one it did.
var errNotMinted = &Refusal{
	Status:  http.StatusAccepted,
	Message: "burn-token for a token this exchange did not mint",
	Errors:  []Problem{{Code: CodeUnknownToken, Description: "not a token this exchange minted (or minted and reported before)"}},
}

// writeBurnt is burn-token's answer, alike for every devpi token.
func writeBurnt(w http.ResponseWriter, exp time.Time) {
	until := "until it expires"
	if !exp.IsZero() {
		until = "until " + exp.UTC().Format(time.RFC3339)
	}
	writeJSON(w, http.StatusAccepted, map[string]string{
		"message": "reported used, not revoked: a devpi token cannot be revoked alone; this one is good " + until,
	})
}

// mintedTokens remembers the tokens handed out, by their SHA-256 (never
// the token), each until it expires: what burn-token may report. Bounded
// as MemoryReplay is; a token minted while it is full is not remembered,
// and a report of it is audited as one of a token not minted here.
type mintedTokens struct {
	mu   sync.Mutex
	m    map[[sha256.Size]byte]Record
	next time.Time // when to sweep
}

func (t *mintedTokens) add(tok string, rec Record, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[[sha256.Size]byte]Record{}
	}
	if !now.Before(t.next) || len(t.m) >= maxRemembered {
		for k, r := range t.m {
			if now.After(time.Unix(r.Expires, 0)) {
				delete(t.m, k)
			}
		}
		t.next = now.Add(time.Minute)
	}
	if len(t.m) < maxRemembered {
		t.m[sha256.Sum256([]byte(tok))] = rec
	}
}

// take forgets tok and returns its record, if it was minted here and has
// not expired: each is reported once.
func (t *mintedTokens) take(tok string, now time.Time) (Record, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := sha256.Sum256([]byte(tok))
	rec, ok := t.m[k]
	if !ok {
		return Record{}, false
	}
	delete(t.m, k)
	return rec, !now.After(time.Unix(rec.Expires, 0))
}

// event is the audit event of r, naming its caller.
func (s *Server) event(r *http.Request) Event {
	var ev Event
	var trusted []netip.Prefix
	if cfg := s.opts.Config(); cfg != nil {
		trusted = cfg.TrustedProxies
	}
	ev.Remote, ev.Via = ClientAddr(r.RemoteAddr, r.Header.Values("X-Forwarded-For"), trusted)
	return ev
}

// errOff answers while the config has no [exchange] (removed on reload):
// PyPI's answer when trusted publishing is off.
var errOff = refusal(http.StatusNotFound, CodeNotEnabled, "trusted publishing is turned off in the exchange's config")

// readToken reads PyPI's {"token": "..."} body.
func readToken(r *http.Request) (string, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, 64<<10))
	var req struct {
		Token string `json:"token"`
	}
	if err == nil {
		err = localapi.DecodeStrict(body, &req)
	}
	if err != nil || strings.TrimSpace(req.Token) == "" {
		return "", false
	}
	return req.Token, true
}

// exchange runs every check, and mints when all pass. In this order: a
// used token is refused before the publisher's budget is touched; the
// budget is spent and the token minted before the token is recorded as
// used, so that a refusal for the budget or a failure to mint leaves the
// job's one identity token good; and of two uses at once, the one that
// loses the record gets nothing. key is the token's replay key, for the
// caller to forget if the minted token is not handed out.
func (s *Server) exchange(r *http.Request, ev *Event) (*Minted, string, *Refusal) {
	cfg := s.opts.Config()
	if cfg == nil {
		return nil, "", errOff
	}
	raw, ok := readToken(r)
	if !ok {
		return nil, "", refusal(http.StatusBadRequest, CodeInvalidPayload, `the request is not {"token": "<identity token>"}`)
	}
	issuers := map[string]bool{}
	for _, p := range cfg.Publishers {
		issuers[p.Issuer] = true
	}
	id, rf := s.opts.Verifier.Verify(r.Context(), raw, cfg.Audience, issuers)
	if rf != nil {
		return nil, "", rf
	}
	ev.Issuer = id.Issuer
	ev.Claims = pick(id.Claims, AuditClaims)
	// Verifying may have waited on the issuer while the config was
	// reloaded: the publishers, audience and max_ttl are the ones in force
	// now.
	if cfg = s.opts.Config(); cfg == nil {
		return nil, "", errOff
	}
	if id.Audience != cfg.Audience {
		return nil, "", refusal(422, CodeInvalidAudience, fmt.Sprintf("not issued for this exchange's audience %q", cfg.Audience))
	}
	p, rf := match(cfg.Publishers, id)
	if rf != nil {
		return nil, "", rf
	}
	ev.Publisher = p.Name
	now := s.opts.Now()
	key := id.ReplayKey
	if seen, err := s.opts.Replay.Seen(key, now); err != nil {
		ev.Reason = "the replay cache: " + err.Error()
		return nil, "", errReplayStore
	} else if seen {
		return nil, "", errReused
	}
	if !s.allow(p, now) {
		return nil, "", refusal(http.StatusTooManyRequests, CodeBudget, fmt.Sprintf("over the publisher's budget of %d exchanges a minute", p.Budget))
	}
	minted, rec, err := s.opts.Minter.MintExchange(r.Context(), p, cfg.MaxTTL)
	if err != nil {
		ev.Reason = err.Error()
		return nil, "", refusal(http.StatusServiceUnavailable, CodeUnavailable, fmt.Sprintf("the exchange cannot mint for publisher %s now; its audit log says why", p.Name))
	}
	fresh, err := s.opts.Replay.Use(key, id.Expiry.Add(Leeway), now)
	switch {
	case err != nil:
		ev.Reason = fmt.Sprintf("token %s minted and dropped: the replay cache: %v", rec.TokenID, err)
		return nil, "", errReplayStore
	case !fresh:
		ev.Reason = fmt.Sprintf("token %s minted and dropped: another exchange of this identity token recorded it first", rec.TokenID)
		return nil, "", errReused
	}
	ev.Minted = rec
	return minted, key, nil
}

var (
	errReused      = refusal(422, CodeReused, "this identity token was exchanged before: each is good once")
	errReplayStore = refusal(http.StatusServiceUnavailable, CodeUnavailable, "the exchange cannot record that this identity token was used; its audit log says why")
)

// allow spends one exchange of p's budget.
func (s *Server) allow(p config.Publisher, now time.Time) bool {
	if p.Budget <= 0 {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.budgets[p.Name]
	if l == nil || l.Burst() != p.Budget {
		l = rate.NewLimiter(rate.Limit(float64(p.Budget)/60), p.Budget)
		s.budgets[p.Name] = l
	}
	return l.AllowN(now, 1)
}

func pick(claims map[string]string, keys []string) map[string]string {
	out := map[string]string{}
	for _, k := range keys {
		if v, ok := claims[k]; ok {
			out[k] = clip(v)
		}
	}
	return out
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	var b bytes.Buffer
	_ = json.NewEncoder(&b).Encode(v)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}
