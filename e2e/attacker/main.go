// Command attacker plays another local user against devpi-credd in the
// e2e tests and the benchmarks. It is built by the test bed and run under
// another uid; it is never shipped.
//
//	attacker serve SOCKET LOG      impersonate a daemon: answer every request
//	                               with made-up credentials, log what was asked
//	attacker flood SOCKET DURATION hold connections open and send requests as
//	                               fast as the daemon answers; print counts
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: attacker serve SOCKET LOG | attacker flood SOCKET DURATION")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2], os.Args[3])
	case "flood":
		var d time.Duration
		if d, err = time.ParseDuration(os.Args[3]); err == nil {
			err = flood(os.Args[2], d)
		}
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "attacker:", err)
		os.Exit(1)
	}
}

// serve answers like devpi-credd's daemon would, with the attacker's
// credentials, and writes down every request it gets.
func serve(socket, logPath string) error {
	_ = os.Remove(socket)
	l, err := net.Listen("unix", socket)
	if err != nil {
		return err
	}
	if err := os.Chmod(socket, 0o666); err != nil {
		return err
	}
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	return http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		fmt.Fprintf(logf, "%s %s %s\n", r.Method, r.URL.Path, strings.TrimSpace(string(body)))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"username": "mallory", "password": "devpi-STOLENBYMALLORY", "expires": time.Now().Add(time.Hour).Unix(),
			"server": "x", "token_id": "x", "caveats": []string{}, "pid": 1})
	}))
}

// flood holds as many connections open as the daemon lets it, and from
// other connections sends credential requests back to back, for d. It
// prints how many requests were answered with which status.
func flood(socket string, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var wg sync.WaitGroup
	var held, refused, other, failed atomic.Int64
	// workers runs n goroutines that each connect again and again until
	// the flood ends, and do with each connection what use says.
	workers := func(n int, use func(net.Conn)) {
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					c, err := net.Dial("unix", socket)
					if err != nil {
						failed.Add(1)
						time.Sleep(time.Millisecond)
						continue
					}
					use(c)
					c.Close()
				}
			}()
		}
	}
	// Holders: connect and say nothing. Together with the askers, more
	// connections than the daemon allows one uid.
	workers(6, func(c net.Conn) {
		held.Add(1)
		_ = c.SetReadDeadline(time.Now().Add(d))
		_, _ = io.Copy(io.Discard, c) // until the daemon closes it
	})
	// Askers: a request per connection, as fast as answers come.
	workers(8, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "POST /v1/credentials HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\nContent-Length: 19\r\n\r\n{\"url\":\"http://h/\"}")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		switch {
		case err != nil:
			failed.Add(1)
		case resp.StatusCode == http.StatusForbidden:
			refused.Add(1)
		default:
			other.Add(1)
		}
	})
	wg.Wait()
	fmt.Printf("held=%d refused=%d other=%d failed=%d\n", held.Load(), refused.Load(), other.Load(), failed.Load())
	return nil
}
