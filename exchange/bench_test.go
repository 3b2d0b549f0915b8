package exchange

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/devpi-credd/devpi-credd/config"
	"github.com/devpi-credd/devpi-credd/internal/testissuer"
	"github.com/devpi-credd/devpi-credd/token"
)

// BenchmarkMintToken is the exchange's handler in process, with a minter
// that hands out a fixed token: verification, replay, matching, JSON.
func BenchmarkMintToken(b *testing.B) {
	is, err := testissuer.Start("")
	if err != nil {
		b.Fatal(err)
	}
	defer is.Stop()
	limits, _ := token.ParseLimits([]string{"upload"}, []string{"team/release"}, nil)
	cfg := &config.Exchange{Audience: "devpi", MaxTTL: 15 * time.Minute, Publishers: []config.Publisher{{
		Name: "release", Server: "local", Issuer: is.URL, Limits: limits, Claims: map[string]string{"repository": "org/repo"},
	}}}
	s := NewServer(Options{Verifier: &Verifier{HTTP: is.Client(), Now: time.Now}, Replay: &MemoryReplay{}, Minter: &fakeMinter{},
		Now: time.Now, Config: func() *config.Exchange { return cfg }, Audit: func(Event) error { return nil }})
	h := s.Handler()
	bodies := make([]string, b.N+1)
	for i := range bodies {
		j, _ := json.Marshal(map[string]string{"token": is.Sign(map[string]any{"aud": "devpi"})})
		bodies[i] = string(j)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N + 1 {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, PathMintToken, strings.NewReader(bodies[i])))
		if w.Code != http.StatusOK {
			b.Fatalf("%d %s", w.Code, w.Body)
		}
	}
}
