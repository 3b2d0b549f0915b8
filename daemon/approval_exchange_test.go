package daemon

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/devpi-credd/devpi-credd/approval"
	"github.com/devpi-credd/devpi-credd/exchange"
	"github.com/devpi-credd/devpi-credd/helper"
	"github.com/devpi-credd/devpi-credd/internal/testissuer"
	"github.com/devpi-credd/devpi-credd/store"
)

// A personal daemon's config is the user's: a worm adds an [exchange]
// whose publisher trusts an issuer of its own (its CI's, or one whose CA
// it gives the daemon it starts) and waits for the person to restart and
// unlock. With approval on in the sealed store, the exchange must not
// hand that worm a token that can upload without a code.
func TestExchangeUnderApproval(t *testing.T) {
	for _, personal := range []bool{true, false} {
		t.Run(map[bool]string{true: "personal", false: "system"}[personal], func(t *testing.T) { exchangeUnderApproval(t, personal) })
	}
}

// exchangeUnderApproval runs a daemon with approval on and an exchange:
// personal (the sealed store holds the token and approval), or system
// (a token file and the daemon's own approval file), whose exchange mints
// as its publishers say.
func exchangeUnderApproval(t *testing.T, personal bool) {
	is, err := testissuer.Start("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(is.Stop)
	dir, err := os.MkdirTemp("", "credd") // short: a socket path
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	state := filepath.Join(dir, "state")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	pass := "correct horse battery staple"
	secret, err := approval.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	root := mintRoot(t, "xchg1234")
	rec := &approval.Record{Secret: secret, Policy: approval.Policy{Uploads: true}}
	tokenFile := filepath.Join(dir, "local.token")
	if personal {
		v := &store.Vault{Tokens: map[string]string{"local": root.Reveal()}, Approval: rec}
		if err := (store.Sealed{Path: store.SealedPath(state), WorkFactor: 10}).Seal([]byte(pass), v); err != nil {
			t.Fatal(err)
		}
	} else {
		writeToken(t, tokenFile, root)
		if err := (store.ApprovalFile{Path: store.ApprovalPath(state)}).Save(rec); err != nil {
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(dir, "config.toml")
	socket := filepath.Join(dir, "run", "s")
	text := configText("http://127.0.0.1:3141/", tokenFile, socket, filepath.Join(state, "audit.log"), exchangeConfig(is.URL))
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	// Run as restarted on this config (the worm's edit waits for that).
	f := &fixture{t: t, config: cfg}
	d, _ := f.restart(t, Options{StateDir: state, SealWorkFactor: 10, IssuerHTTP: is.Client()})
	ctx := t.Context()
	if personal {
		if _, err := (&helper.Client{Socket: socket}).Unlock(ctx, pass); err != nil {
			t.Fatal(err)
		}
	}
	base, err := url.Parse("http://" + d.ExchangeAddr())
	if err != nil {
		t.Fatal(err)
	}
	c := &exchange.Client{Base: base, HTTP: http.DefaultClient}
	m, err := c.Exchange(ctx, is.Sign(map[string]any{"aud": "devpi"}))
	if !personal {
		if err != nil {
			t.Fatalf("the exchange of a system daemon: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("the exchange of a sealed personal daemon under approval minted a token without a code (caveats of %s's)", m.Username)
	}
	// The caller learns that it failed; the audit log says why.
	log, rerr := os.ReadFile(filepath.Join(state, "audit.log"))
	if rerr != nil || !strings.Contains(string(log), "approval is on") {
		t.Errorf("the audit log does not say why (%v): %s", rerr, log)
	}
}
