package daemon

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/devpi-credd/devpi-credd/exchange"
	"github.com/devpi-credd/devpi-credd/token"
)

// burn-token takes any devpi token, from anyone: its user and id are
// whatever the caller wrote (the body may be 64 KiB). One the exchange
// did not mint is audited as a refusal, whose line names neither: at one
// line a second, 40 KiB lines filled 3.5 GB a day, and an audit log that
// cannot be written stops every mint.
func TestExchangeBurnTokenLineIsCapped(t *testing.T) {
	root := mintRoot(t, "abcd2345", token.Expires(time.Now().Add(time.Hour)))
	f, _, _ := exchangeFixture(t, root)
	junk, err := token.New([]byte("0123456789abcdef0123456789abcdef"), strings.Repeat("u", 30<<10), strings.Repeat("i", 10<<10))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]string{"token": junk.Reveal()})
	resp, err := http.Post("http://"+f.d.ExchangeAddr()+exchange.PathBurnToken, "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("burn-token: %d", resp.StatusCode)
	}
	f.stop()
	lines := readLines(t, f.audit)
	if len(lines) != 1 {
		t.Fatalf("audit lines: %d, want 1", len(lines))
	}
	if len(lines[0]) > 1<<10 || strings.Contains(lines[0], "reported_used") {
		t.Errorf("a line of %d bytes for a token anyone can make: %.200s", len(lines[0]), lines[0])
	}
}

// Forged reports (a token anyone can make, naming any user) write no
// reported_used line, are counted as the caller's refusals (a burst, then
// summed up), and leave the real report of a minted token its line.
func TestExchangeForgedBurnsCrowdOutNothing(t *testing.T) {
	root := mintRoot(t, "abcd2345", token.Expires(time.Now().Add(time.Hour)))
	f, is, c := exchangeFixture(t, root)
	forged, err := token.New([]byte("0123456789abcdef0123456789abcdef"), "root", "abcd2345")
	if err != nil {
		t.Fatal(err)
	}
	burn := func(tok string) {
		t.Helper()
		body, _ := json.Marshal(map[string]string{"token": tok})
		resp, err := http.Post("http://"+f.d.ExchangeAddr()+exchange.PathBurnToken, "application/json", strings.NewReader(string(body)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("burn-token: %d", resp.StatusCode)
		}
	}
	for range 3 * refusalBurst {
		burn(forged.Reveal())
	}
	m, err := c.Exchange(t.Context(), is.Sign(map[string]any{"aud": "devpi"}))
	if err != nil {
		t.Fatal(err)
	}
	burn(m.Token)
	burn(m.Token)
	f.stop()
	var reported, refused int
	for _, l := range readLines(t, f.audit) {
		var e auditEntry
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatal(err)
		}
		switch e.Event {
		case "reported_used":
			reported++
			if e.User != "alice" {
				t.Errorf("reported_used names %q", e.User)
			}
		case "refuse":
			refused++
			if !strings.Contains(e.Reason, "did not mint") {
				t.Errorf("a forged report's line: %s", l)
			}
		}
	}
	if reported != 1 || refused > refusalBurst+1 {
		t.Errorf("%d reported_used lines (want 1), %d refuse lines (at most the burst)", reported, refused)
	}
}
