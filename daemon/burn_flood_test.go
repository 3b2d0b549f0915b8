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

// burn-token takes any devpi token, from anyone, unverified: its user and
// id are whatever the caller wrote (the body may be 64 KiB). A
// reported_used line holds them capped, as refusal lines hold what a
// caller sent: at one line a second, 40 KiB lines filled 3.5 GB a day,
// and an audit log that cannot be written stops every mint.
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
	if len(lines[0]) > 1<<10 {
		t.Errorf("a reported_used line of %d bytes for a token anyone can make", len(lines[0]))
	}
}
