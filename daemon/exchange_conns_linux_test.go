package daemon

// Issue 15, hole 5: the exchange's connections are capped, per address
// and in total, and closed soon when idle, so that the network cannot
// take the descriptors the owner's socket and reloads need. Linux: the
// tests call from several loopback addresses (127.0.0.0/8 is all local
// there), and lower the process's own descriptor limit.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/devpi-credd/devpi-credd/internal/testissuer"
	"github.com/devpi-credd/devpi-credd/token"
)

// capFixture is a daemon whose exchange has a cap of conns connections
// (an injected descriptor limit), with extra lines in [exchange].
func capFixture(t *testing.T, conns int, exchangeExtra string) *fixture {
	t.Helper()
	is, err := testissuer.Start("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(is.Stop)
	cfg := strings.Replace(exchangeConfig(is.URL), "audience = \"devpi\"\n", "audience = \"devpi\"\n"+exchangeExtra, 1)
	return newFixtureWith(t, "http://h/", mintRoot(t, "abcd2345"), cfg, func(d *Daemon) {
		d.opts.IssuerHTTP = is.Client()
		d.nofile = func() (uint64, error) { return uint64(fdReserve + fdsPerExchangeConn*conns), nil }
	})
}

// dialFrom connects to the exchange from the loopback address 127.0.0.src.
func dialFrom(t *testing.T, addr string, src byte) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, src)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// askAudience sends one request on c and reads its answer, leaving c
// open (keep-alive).
func askAudience(c net.Conn) error {
	if _, err := io.WriteString(c, "GET /_/oidc/audience HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		return err
	}
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	_ = c.SetReadDeadline(time.Time{})
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// Over its address's cap, or over the total, a connection is closed at
// once; those within the caps are served, and closed once idle; a trusted
// proxy's connections count in the total only.
func TestExchangeConnectionCaps(t *testing.T) {
	const total = maxExchangeConnsPerAddr + 8
	f := capFixture(t, total, "trusted_proxies = [\"127.0.0.9\"]\n")
	addr := f.d.ExchangeAddr()
	// Accepted in the order they were made: by the time a later
	// connection is answered, those before it over a cap were closed.
	var one []net.Conn
	for range maxExchangeConnsPerAddr + 5 {
		one = append(one, dialFrom(t, addr, 1))
	}
	probe := dialFrom(t, addr, 2)
	if err := askAudience(probe); err != nil {
		t.Fatalf("another address, within the total: %v", err)
	}
	for i, c := range one[maxExchangeConnsPerAddr:] {
		if !readsEOF(c, time.Second) {
			t.Errorf("connection %d over its address's cap was not closed at once", maxExchangeConnsPerAddr+i)
		}
	}
	if err := askAudience(one[0]); err != nil {
		t.Errorf("a connection within its address's cap: %v", err)
	}
	// 33 held; 7 more fill the total, the rest are closed at once, from
	// any address.
	var three []net.Conn
	for range total - maxExchangeConnsPerAddr - 1 + 3 {
		three = append(three, dialFrom(t, addr, 3))
	}
	late := dialFrom(t, addr, 4)
	dropped := func(n int64) {
		waitFor(t, reloadWithin, fmt.Sprintf("%d connections dropped", n), func() bool { return f.d.Status().ExchangeDropped >= n })
	}
	dropped(5 + 3 + 1)
	if !readsEOF(late, time.Second) {
		t.Error("a connection over the total cap was not closed at once")
	}
	for i, c := range three[len(three)-3:] {
		if !readsEOF(c, time.Second) {
			t.Errorf("connection %d over the total cap was not closed at once", i)
		}
	}
	if n := f.d.xconns.open(); n != total {
		t.Errorf("%d connections open, want the cap, %d", n, total)
	}
	// Idle: those that never asked, after the header timeout; those kept
	// alive after an answer, after the idle timeout.
	start := time.Now()
	for i, c := range append(one[:maxExchangeConnsPerAddr], append(three[:len(three)-3], probe)...) {
		if !readsEOF(c, exchangeIdleTimeout+exchangeHeaderTimeout+10*time.Second) {
			t.Errorf("idle connection %d was not closed", i)
		}
	}
	if d := time.Since(start); d > max(exchangeIdleTimeout, exchangeHeaderTimeout)+3*time.Second {
		t.Errorf("idle connections lived %s", d)
	}
	waitFor(t, reloadWithin, "the exchange's places released", func() bool { return f.d.xconns.open() == 0 })
	// A trusted proxy: everyone behind it shares its address, so only the
	// total holds.
	var proxied []net.Conn
	for range total {
		proxied = append(proxied, dialFrom(t, addr, 9))
	}
	for i, c := range proxied {
		if err := askAudience(c); err != nil {
			t.Errorf("the trusted proxy's connection %d: %v", i, err)
		}
	}
	over := dialFrom(t, addr, 9)
	dropped(5 + 4 + 1)
	if !readsEOF(over, time.Second) {
		t.Error("the trusted proxy's connection over the total was not closed at once")
	}
	if st := f.d.Status(); st.ExchangeDropped != 5+4+1 || st.Dropped != 0 {
		t.Errorf("exchange dropped = %d, local %d; want %d and 0", st.ExchangeDropped, st.Dropped, 5+4+1)
	}
}

// holdEnv makes the test binary a process that holds connections to an
// exchange (see TestMain): "ADDR N SOURCES".
const holdEnv = "DEVPI_CREDD_TEST_HOLD_EXCHANGE"

func TestMain(m *testing.M) {
	if spec := os.Getenv(holdEnv); spec != "" {
		holdConnections(spec)
		return
	}
	os.Exit(m.Run())
}

// holdConnections keeps N connections to the exchange at ADDR open, from
// SOURCES loopback addresses in turn, each asking for the audience every
// few seconds (so that it is never idle for long) and made again when the
// exchange closes it, as an attacker would; it prints "dialed" once each
// was made once, and exits when stdin closes.
func holdConnections(spec string) {
	var addr string
	var n, sources int
	if _, err := fmt.Sscan(spec, &addr, &n, &sources); err != nil {
		fmt.Fprintln(os.Stderr, "hold:", err)
		os.Exit(2)
	}
	var dialed atomic.Int64
	for i := range n {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(1+i%sources))}, Timeout: 10 * time.Second}
		go func() {
			for first := true; ; first = false {
				c, err := d.Dial("tcp", addr)
				if first && dialed.Add(1) == int64(n) {
					fmt.Println("dialed")
				}
				if err == nil {
					for askAudience(c) == nil {
						time.Sleep(exchangeIdleTimeout / 2)
					}
					c.Close()
				}
				time.Sleep(2 * time.Second)
			}
		}()
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}

// The attack of the review: with the hard limit of many hosts (1,024
// descriptors), a flood of 1,100 kept-alive connections to the exchange,
// from 40 addresses (more than the per-address cap alone would keep under
// the limit: the reserve holds it), held by another process. The owner's socket still
// answers a mint, and a reload still loads a rotated token.
func TestExchangeFloodLeavesDescriptorsForTheOwner(t *testing.T) {
	const limit, flood, sources = 1024, 1100, 40
	var was syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &was); err != nil {
		t.Fatal(err)
	}
	if was.Max < 4*limit {
		t.Fatalf("the hard descriptor limit is %d: this test needs %d for the process that floods", was.Max, 4*limit)
	}
	low := was
	low.Cur = limit
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	// Registered first, so run last: after the daemon and the flood end.
	t.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &was) })

	root := mintRoot(t, "firstAAA", token.Expires(time.Now().Add(time.Hour)))
	is, err := testissuer.Start("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(is.Stop)
	f := newFixtureWith(t, "http://h/", root, exchangeConfig(is.URL), func(d *Daemon) { d.opts.IssuerHTTP = is.Client() })
	want, err := exchangeConnCap(limit)
	if err != nil {
		t.Fatal(err)
	}

	hold := exec.Command(os.Args[0], "-test.run=^$")
	hold.Env = append(os.Environ(), fmt.Sprintf("%s=%s %d %d", holdEnv, f.d.ExchangeAddr(), flood, sources))
	stdin, err := hold.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := hold.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	hold.Stderr = os.Stderr
	if err := hold.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); _ = hold.Wait() })
	dialed := make(chan bool, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		dialed <- line == "dialed\n"
	}()
	select {
	case ok := <-dialed:
		if !ok {
			t.Fatal("the flooding process ended before it dialed")
		}
	case <-time.After(time.Minute):
		t.Fatal("the flooding process did not dial within a minute")
	}
	waitFor(t, 30*time.Second, "the exchange full", func() bool { return f.d.xconns.open() >= min(want, limit/2) })

	if c, err := f.get("http://h/"); err != nil || c.TokenID != "firstAAA" {
		t.Fatalf("the owner's mint during the flood: %+v, %v", c, err)
	}
	text, err := os.ReadFile(f.config)
	if err != nil {
		t.Fatal(err)
	}
	writeToken(t, f.tokenFile, mintRoot(t, "secondBB", token.Expires(time.Now().Add(time.Hour))))
	if err := os.WriteFile(f.config, []byte(strings.Replace(string(text), `default_ttl = "2m"`, `default_ttl = "3m"`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, reloadWithin, "the reload during the flood", func() bool {
		st := f.d.Status()
		return f.d.Config().DefaultTTL == 3*time.Minute && st.Servers[0].TokenID == "secondBB" && st.Servers[0].Error == ""
	})
	if c, err := f.get("http://h/"); err != nil || c.TokenID != "secondBB" {
		t.Fatalf("the owner's mint after the reload: %+v, %v", c, err)
	}
	if n := f.d.xconns.open(); n > want {
		t.Errorf("the exchange holds %d connections, over its cap of %d", n, want)
	}
	if f.d.Status().ExchangeDropped == 0 {
		t.Error("no connection of the flood was closed: it did not reach the cap")
	}
	if strings.Contains(f.logs.String(), "too many open files") {
		t.Errorf("the daemon ran out of descriptors:\n%s", f.logs)
	}
}
