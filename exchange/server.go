package exchange

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/devpi-credd/devpi-credd/config"
	"github.com/devpi-credd/devpi-credd/localapi"
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
}

// NewServer makes a Server.
func NewServer(opts Options) *Server { return &Server{opts: opts, budgets: map[string]*rate.Limiter{}} }

// Handler serves GET /_/oidc/audience and POST /_/oidc/mint-token.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathAudience, func(w http.ResponseWriter, r *http.Request) {
		cfg := s.opts.Config()
		if cfg == nil {
			writeJSON(w, http.StatusServiceUnavailable, errOff)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"audience": cfg.Audience})
	})
	mux.HandleFunc("POST "+PathMintToken, s.mintToken)
	return mux
}

func (s *Server) mintToken(w http.ResponseWriter, r *http.Request) {
	var ev Event
	var trusted []netip.Prefix
	if cfg := s.opts.Config(); cfg != nil {
		trusted = cfg.TrustedProxies
	}
	ev.Remote, ev.Via = ClientAddr(r.RemoteAddr, r.Header.Values("X-Forwarded-For"), trusted)
	minted, rf := s.exchange(r, &ev)
	if rf == nil {
		if err := s.opts.Audit(ev); err != nil {
			ev.Reason = "the audit log: " + err.Error()
			rf = refusal(http.StatusServiceUnavailable, CodeUnavailable, "no token handed out: the exchange cannot record it in its audit log")
		}
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

// errOff answers while the config has no [exchange] (removed on reload).
var errOff = refusal(http.StatusServiceUnavailable, CodeUnavailable, "trusted publishing is turned off in the exchange's config")

// exchange runs every check, and mints when all pass.
func (s *Server) exchange(r *http.Request, ev *Event) (*Minted, *Refusal) {
	cfg := s.opts.Config()
	if cfg == nil {
		return nil, errOff
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, 64<<10))
	var req struct {
		Token string `json:"token"`
	}
	if err == nil {
		err = localapi.DecodeStrict(body, &req)
	}
	if err != nil || strings.TrimSpace(req.Token) == "" {
		return nil, refusal(http.StatusBadRequest, CodeInvalidPayload, `the request is not {"token": "<identity token>"}`)
	}
	issuers := map[string]bool{}
	for _, p := range cfg.Publishers {
		issuers[p.Issuer] = true
	}
	id, rf := s.opts.Verifier.Verify(r.Context(), req.Token, cfg.Audience, issuers)
	if rf != nil {
		return nil, rf
	}
	ev.Issuer = id.Issuer
	ev.Claims = pick(id.Claims, AuditClaims)
	// Verifying may have waited on the issuer while the config was
	// reloaded: the publishers, audience and max_ttl are the ones in force
	// now.
	if cfg = s.opts.Config(); cfg == nil {
		return nil, errOff
	}
	if !slices.Contains(id.Audience, cfg.Audience) {
		return nil, refusal(422, CodeInvalidAudience, fmt.Sprintf("not issued for this exchange's audience %q", cfg.Audience))
	}
	p, rf := match(cfg.Publishers, id)
	if rf != nil {
		return nil, rf
	}
	ev.Publisher = p.Name
	now := s.opts.Now()
	if fresh, err := s.opts.Replay.Use(id.Issuer+" "+id.JTI, id.Expiry.Add(Leeway), now); err != nil {
		ev.Reason = "the replay cache: " + err.Error()
		return nil, refusal(http.StatusServiceUnavailable, CodeUnavailable, "the exchange cannot record that this identity token was used; its audit log says why")
	} else if !fresh {
		return nil, refusal(422, CodeReplayed, "this identity token was exchanged before: each is good once")
	}
	if !s.allow(p, now) {
		return nil, refusal(http.StatusTooManyRequests, CodeBudget, fmt.Sprintf("over the publisher's budget of %d exchanges a minute", p.Budget))
	}
	minted, rec, err := s.opts.Minter.MintExchange(r.Context(), p, cfg.MaxTTL)
	if err != nil {
		ev.Reason = err.Error()
		return nil, refusal(http.StatusServiceUnavailable, CodeUnavailable, fmt.Sprintf("the exchange cannot mint for publisher %s now; its audit log says why", p.Name))
	}
	ev.Minted = rec
	return minted, nil
}

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
