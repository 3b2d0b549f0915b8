// Command load measures devpi-credd's daemon over its Unix socket: N
// concurrent keep-alive clients ask for credentials for a bounded time and
// count, and it reports mints/s, latency percentiles and the daemon's RSS.
// With -ceiling it serves a bare Go HTTP server on a socket instead, which
// answers a fixed body: the ceiling for the same load.
//
//	load -socket S -pid P [-c 64] [-d 10s] [-n 2000000] [-url URL]
//	load -ceiling S
//	load -mktoken FILE   (writes a root token with a made-up key)
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/devpi-credd/devpi-credd/bench/loadgen"
	"github.com/devpi-credd/devpi-credd/localapi"
)

func main() {
	socket := flag.String("socket", "", "the daemon's socket")
	pid := flag.Int("pid", 0, "the daemon's pid, for its RSS")
	conc := flag.Int("c", 64, "concurrent clients")
	dur := flag.Duration("d", 10*time.Second, "how long to load")
	maxN := flag.Int64("n", 2_000_000, "stop after this many requests")
	target := flag.String("url", "http://127.0.0.1:3141/bench/dev/", "URL to ask credentials for")
	ceiling := flag.String("ceiling", "", "serve a bare Go HTTP server on this socket")
	mktoken := flag.String("mktoken", "", "write a root token (made-up key) to this file")
	rate := flag.Int("rate", 0, "requests per second in all (0: as fast as answers come)")
	flag.Parse()
	var err error
	switch {
	case *mktoken != "":
		err = loadgen.WriteRoot(*mktoken)
	case *ceiling != "":
		err = serveCeiling(*ceiling)
	case *socket != "":
		err = run(*socket, *pid, *conc, *dur, *maxN, *target, *rate)
	default:
		flag.Usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

// serveCeiling answers every request with a body shaped like a mint's.
func serveCeiling(path string) error {
	_ = os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return err
	}
	body := []byte(`{"username":"bench","password":"devpi-` + strings.Repeat("A", 150) + `","expires":1,"server":"s","token_id":"abcd2345","caveats":["expires=1","allowed=upload","indexes=bench/dev"]}` + "\n")
	return loadgen.ServeFixed(l, body, nil)
}

func rssKB(pid int) int64 {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(rest), "%d", &kb)
			return kb
		}
	}
	return 0
}

func run(socket string, pid, conc int, dur time.Duration, maxN int64, target string, rate int) error {
	idle := rssKB(pid)
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		},
		MaxIdleConnsPerHost: conc,
		MaxConnsPerHost:     conc,
	}
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	body := []byte(fmt.Sprintf(`{"url":%q}`, target))
	load := loadgen.Load{Clients: conc, Duration: dur, Max: maxN, Rate: rate}
	res := load.Run(func(int64) error {
		resp, err := hc.Post("http://d"+localapi.PathCredentials, "application/json", bytes.NewReader(body))
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New(resp.Status)
		}
		return nil
	})
	if res.OK == 0 {
		return fmt.Errorf("no successful request (%d failed)", res.Failed)
	}
	res.Print(conc)
	if pid != 0 {
		fmt.Printf("daemon RSS idle %.1f MB, after load %.1f MB\n", float64(idle)/1024, float64(rssKB(pid))/1024)
	}
	if res.Failed > 0 {
		return fmt.Errorf("%d requests failed", res.Failed)
	}
	return nil
}
