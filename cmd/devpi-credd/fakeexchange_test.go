package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/devpi-credd/devpi-credd/exchange"
)

// fakeexchange AUDIENCE TOKENFILE: serves PyPI's two paths on loopback
// http, in $EXCHANGE, for the script: the audience endpoint names
// AUDIENCE; mint-token appends the identity token posted to posted.jwt
// and answers with TOKENFILE's token, for an hour.
func cmdFakeexchange(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: fakeexchange AUDIENCE TOKENFILE")
	}
	aud, tokenFile, posted := args[0], ts.MkAbs(args[1]), ts.MkAbs("posted.jwt")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case exchange.PathAudience:
			_ = json.NewEncoder(w).Encode(map[string]string{"audience": aud})
		case exchange.PathMintToken:
			var body struct{ Token string }
			_ = json.NewDecoder(r.Body).Decode(&body)
			f, err := os.OpenFile(posted, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
			if err == nil {
				_, _ = f.WriteString(body.Token + "\n")
				f.Close()
			}
			tok, _ := os.ReadFile(tokenFile)
			_ = json.NewEncoder(w).Encode(exchange.Minted{Success: true, Token: strings.TrimSpace(string(tok)), Username: "alice", Expires: time.Now().Add(time.Hour).Unix()})
		default:
			http.NotFound(w, r)
		}
	}))
	ts.Defer(srv.Close)
	ts.Setenv("EXCHANGE", srv.URL)
}
