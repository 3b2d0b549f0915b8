// Command exchange measures trusted publishing's exchange: it runs a test
// issuer, starts 'devpi-credd serve' with an [exchange] that trusts it,
// signs identity tokens beforehand (each is good once), and posts them to
// /_/oidc/mint-token from N concurrent keep-alive clients over TCP; then it
// does the same against a bare Go HTTP server on TCP that answers a fixed
// body of the same shape (the ceiling), in a process of its own, and
// against one that also verifies each token's RS256 signature with
// go-jose and nothing else (the floor of any exchange that checks
// signatures). It reports exchanges/s, latency percentiles, the ratios,
// and how often the issuer's keys were fetched (once, or it fails).
//
//	exchange -bin BIN [-c 64] [-d 10s] [-n 20000] [-rate 1000]
//	exchange -ceiling ADDR [-verify-keys JWKS]
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/devpi-credd/devpi-credd/bench/loadgen"
	"github.com/devpi-credd/devpi-credd/exchange"
	"github.com/devpi-credd/devpi-credd/internal/testissuer"
)

func main() {
	bin := flag.String("bin", "", "the devpi-credd binary")
	conc := flag.Int("c", 64, "concurrent clients")
	dur := flag.Duration("d", 10*time.Second, "how long each run lasts at most")
	n := flag.Int("n", 20000, "identity tokens for the closed-loop run (signed beforehand; each is good once)")
	rate := flag.Int("rate", 1000, "exchanges a second offered in the open-loop run")
	ceiling := flag.String("ceiling", "", "serve the ceiling on this TCP address")
	verifyKeys := flag.String("verify-keys", "", "with -ceiling: verify each token's signature with the keys in this JWKS file")
	flag.Parse()
	var err error
	switch {
	case *ceiling != "":
		err = serveCeiling(*ceiling, *verifyKeys)
	case *bin != "":
		err = run(*bin, *conc, *dur, *n, *rate)
	default:
		flag.Usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "exchange:", err)
		os.Exit(1)
	}
}

// serveCeiling answers every POST with a body shaped like a minted
// exchange's, having read the request; with keys (a JWKS file), only once
// the token in it verifies with one of them.
func serveCeiling(addr, keys string) error {
	var set jose.JSONWebKeySet
	if keys != "" {
		b, err := os.ReadFile(keys)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, &set); err != nil {
			return err
		}
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	body := []byte(`{"success":true,"token":"devpi-` + strings.Repeat("A", 220) + `","username":"bench","expires":1}` + "\n")
	var check func(io.Reader) error
	if keys != "" {
		check = func(r io.Reader) error { return verifyBody(r, set) }
	}
	return loadgen.ServeFixed(l, body, check)
}

func verifyBody(r io.Reader, set jose.JSONWebKeySet) error {
	var req struct {
		Token string `json:"token"`
	}
	if err := json.NewDecoder(r).Decode(&req); err != nil {
		return err
	}
	jws, err := jose.ParseSigned(req.Token, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		return err
	}
	for _, k := range set.Key(jws.Signatures[0].Header.KeyID) {
		if _, err := jws.Verify(k); err == nil {
			return nil
		}
	}
	return errors.New("no key verifies it")
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// loads runs the same two loads against any server: a closed loop over
// the first n bodies, then an open loop at rate over the rest.
type loads struct {
	conc, n, rate int
	dur           time.Duration
	bodies        [][]byte
	hc            *http.Client
}

// post sends one body and wants a minted answer.
func (l *loads) post(url string, body []byte) error {
	resp, err := l.hc.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var m exchange.Minted
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || !m.Success {
		return errors.New(resp.Status)
	}
	return nil
}

// both runs the closed and the open loop against url, printing each.
func (l *loads) both(name, url string) (closed, open loadgen.Result) {
	fmt.Println("== " + name)
	rest := l.bodies[l.n:]
	closed = loadgen.Load{Clients: l.conc, Duration: l.dur, Max: int64(l.n)}.Run(func(i int64) error { return l.post(url, l.bodies[i]) })
	closed.Print(l.conc)
	open = loadgen.Load{Clients: l.conc, Duration: l.dur, Max: int64(len(rest)), Rate: l.rate}.Run(func(i int64) error { return l.post(url, rest[i]) })
	open.Print(l.conc)
	return closed, open
}

func run(bin string, conc int, dur time.Duration, n, rate int) error {
	work, err := os.MkdirTemp("", "credd-exchange-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	is, err := testissuer.Start("")
	if err != nil {
		return err
	}
	defer is.Stop()
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	daemon, err := startDaemon(bin, work, addr, is)
	if err != nil {
		return err
	}
	defer stopProc(daemon)
	mint := "http://" + addr + exchange.PathMintToken
	if err := waitHTTP("http://"+addr+exchange.PathAudience, 30*time.Second); err != nil {
		return err
	}
	total := n + rate*int(dur/time.Second) + 1
	fmt.Printf("signing %d identity tokens (RS256) beforehand...\n", total)
	l := &loads{conc: conc, n: n, rate: rate, dur: dur, bodies: signAll(is, total), hc: client(conc)}
	// One exchange first: the discovery document and keys are fetched
	// here, as they would be by the first job after a start.
	if err := l.post(mint, l.bodies[0]); err != nil {
		return fmt.Errorf("the first exchange: %w", err)
	}
	l.bodies = l.bodies[1:]
	closed, open := l.both("devpi-credd serve: POST /_/oidc/mint-token (verify RS256, replay check, derive, audit line)", mint)
	fetches := is.KeyFetches()
	fmt.Printf("the issuer's keys were fetched %d time(s) for %d exchanges\n", fetches, closed.OK+open.OK+1)
	jwks := filepath.Join(work, "jwks.json")
	if err := saveKeys(is, jwks); err != nil {
		return err
	}
	bare, err := l.against("ceiling: bare Go net/http on TCP, fixed body, the same requests")
	if err != nil {
		return err
	}
	verifying, err := l.against("floor of verifying: the same, verifying each token's RS256 signature (go-jose) first", "-verify-keys", jwks)
	if err != nil {
		return err
	}
	fmt.Printf("== the exchange: %.0f/s, %.0f%% of the bare ceiling (%.0f/s), %.0f%% of the verifying floor (%.0f/s)\n",
		closed.Throughput(), 100*closed.Throughput()/bare[0].Throughput(), bare[0].Throughput(),
		100*closed.Throughput()/verifying[0].Throughput(), verifying[0].Throughput())
	fmt.Printf("   p99 at %d/s offered: exchange %s, ceiling %s, verifying floor %s\n", rate, open.Percentile(0.99).Round(time.Microsecond),
		bare[1].Percentile(0.99).Round(time.Microsecond), verifying[1].Percentile(0.99).Round(time.Microsecond))
	switch {
	case closed.Failed+open.Failed > 0:
		return fmt.Errorf("%d exchanges failed", closed.Failed+open.Failed)
	case fetches != 1:
		return fmt.Errorf("the keys were fetched %d times, want once", fetches)
	}
	return nil
}

// against runs both loads against this program started as a ceiling with
// args, in a process of its own.
func (l *loads) against(name string, args ...string) ([2]loadgen.Result, error) {
	addr, err := freeAddr()
	if err != nil {
		return [2]loadgen.Result{}, err
	}
	cmd, err := startSelf(append([]string{"-ceiling", addr}, args...)...)
	if err != nil {
		return [2]loadgen.Result{}, err
	}
	defer stopProc(cmd)
	if err := waitHTTP("http://"+addr+"/", 30*time.Second); err != nil {
		return [2]loadgen.Result{}, err
	}
	c, o := l.both(name, "http://"+addr+exchange.PathMintToken)
	return [2]loadgen.Result{c, o}, nil
}

// signAll signs count identity tokens on every CPU, as request bodies.
func signAll(is *testissuer.Issuer, count int) [][]byte {
	out := make([][]byte, count)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range runtime.NumCPU() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < int64(count); i = next.Add(1) - 1 {
				out[i], _ = json.Marshal(map[string]string{"token": is.Sign(map[string]any{"aud": "devpi-bench"})})
			}
		}()
	}
	wg.Wait()
	return out
}

// saveKeys writes the issuer's key set (as its endpoint serves it) to path.
func saveKeys(is *testissuer.Issuer, path string) error {
	resp, err := is.Client().Get(is.URL + "/jwks")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

// startSelf runs this program again with args.
func startSelf(args ...string) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, args...)
	cmd.Stderr = os.Stderr
	return cmd, cmd.Start()
}

func client(conc int) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: conc, MaxConnsPerHost: conc}}
}

// startDaemon runs devpi-credd serve with an exchange on addr trusting
// is, for a made-up root token (nothing verifies it here).
func startDaemon(bin, work, addr string, is *testissuer.Issuer) (*exec.Cmd, error) {
	if err := loadgen.WriteRoot(filepath.Join(work, "bench.token")); err != nil {
		return nil, err
	}
	files := map[string]string{
		"ca.pem": string(is.CertPEM),
		"config.toml": fmt.Sprintf(`socket = %q
audit_log = %q

[servers.bench]
url = "http://127.0.0.1:3141/"
token_file = %q

[exchange]
listen = %q
audience = "devpi-bench"
# The clients all come from 127.0.0.1, as behind the proxy in front of a
# real exchange: counted in the total only, not per address (32).
trusted_proxies = ["127.0.0.1"]

[[exchange.publishers]]
server = "bench"
issuer = %q
indexes = ["bench/release"]
any_project = true
budget = 0
claims = { repository = "org/repo", ref = "refs/tags/v*" }
`, filepath.Join(work, "run", "socket"), filepath.Join(work, "audit.log"), filepath.Join(work, "bench.token"), addr, is.URL),
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(work, name), []byte(text), 0o600); err != nil {
			return nil, err
		}
	}
	cmd := exec.Command(bin, "serve", "--config", filepath.Join(work, "config.toml"), "--log-level", "warn")
	cmd.Env = append(os.Environ(), "SSL_CERT_FILE="+filepath.Join(work, "ca.pem"))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd, cmd.Start()
}

func stopProc(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
}

// waitHTTP waits until url answers at all.
func waitHTTP(url string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s does not answer: %v", url, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
