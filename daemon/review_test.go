package daemon

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/devpi-credd/devpi-credd/exchange"
	"github.com/devpi-credd/devpi-credd/internal/testissuer"
	"github.com/devpi-credd/devpi-credd/token"
)

// Issue 15, "a publisher asking for more than the server's token allows",
// for its projects: a root token limited to one of the two projects the
// publisher names would mint a token for that one alone. Refused, as for
// indexes and permissions (TestExchangeAskingForMoreIsRefused).
func TestExchangeAskingForMoreProjectsIsRefused(t *testing.T) {
	config := strings.Replace(exchangeConfig("ISSUER"), "any_project = true", `projects = ["foo", "bar"]`, 1)
	for _, tt := range []struct {
		name     string
		projects []string
		ok       bool
	}{
		{"the root has one of its two projects", []string{"foo"}, false},
		{"the root has both and more", []string{"foo", "bar", "baz"}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			is, err := testissuer.Start("")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(is.Stop)
			r, err := token.Projects(tt.projects...)
			if err != nil {
				t.Fatal(err)
			}
			root := mintRoot(t, "abcd2345", r)
			f := newFixtureWith(t, "http://127.0.0.1:3141/", root, strings.Replace(config, "ISSUER", is.URL, 1), func(d *Daemon) { d.opts.IssuerHTTP = is.Client() })
			base, _ := url.Parse("http://" + f.d.ExchangeAddr())
			c := &exchange.Client{Base: base, HTTP: http.DefaultClient}
			_, err = c.Exchange(t.Context(), is.Sign(map[string]any{"aud": "devpi"}))
			if tt.ok != (err == nil) {
				t.Fatalf("minted: %v, want %v", err, tt.ok)
			}
			f.stop()
			if lines := readLines(t, f.audit); !tt.ok && (len(lines) != 1 || !strings.Contains(lines[0], "asks for more")) {
				t.Errorf("the audit line does not say why: %v", lines)
			}
		})
	}
}
