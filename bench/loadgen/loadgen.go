// Package loadgen drives a load for the benchmarks: N concurrent
// clients, closed loop (each sends when its answer came) or open loop (at
// a rate offered in all), bounded in time and count; it reports
// throughput and latency percentiles.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/devpi-credd/devpi-credd/token"
)

// Load is one run's shape.
type Load struct {
	Clients  int
	Duration time.Duration
	// Max bounds the requests sent in all (0: no bound).
	Max int64
	// Rate, when set, is the requests a second offered in all, each
	// client on its own schedule: latency at that load, not at
	// saturation.
	Rate int
}

// Result is what a run measured.
type Result struct {
	OK, Failed int64
	Elapsed    time.Duration
	Mode       string
	lat        []time.Duration
}

// Run sends do(n) (n counts from 0 across all clients) until the time or
// the count is up; an error counts as a failure.
func (l Load) Run(do func(n int64) error) Result {
	var next, failed atomic.Int64
	lat := make([][]time.Duration, l.Clients)
	deadline := time.Now().Add(l.Duration)
	var interval time.Duration
	if l.Rate > 0 {
		interval = time.Duration(int64(time.Second) * int64(l.Clients) / int64(l.Rate))
	}
	var wg sync.WaitGroup
	start := time.Now()
	for i := range l.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			at := time.Now().Add(time.Duration(i) * interval / time.Duration(l.Clients))
			for time.Now().Before(deadline) {
				n := next.Add(1) - 1
				if l.Max > 0 && n >= l.Max {
					return
				}
				if interval > 0 {
					time.Sleep(time.Until(at))
					at = at.Add(interval)
				}
				t0 := time.Now()
				if err := do(n); err != nil {
					failed.Add(1)
					continue
				}
				lat[i] = append(lat[i], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	r := Result{Failed: failed.Load(), Elapsed: time.Since(start), Mode: "as fast as answered"}
	if l.Rate > 0 {
		r.Mode = fmt.Sprintf("at %d/s offered", l.Rate)
	}
	for _, x := range lat {
		r.lat = append(r.lat, x...)
	}
	sort.Slice(r.lat, func(i, j int) bool { return r.lat[i] < r.lat[j] })
	r.OK = int64(len(r.lat))
	return r
}

// Throughput is answers a second.
func (r Result) Throughput() float64 { return float64(r.OK) / r.Elapsed.Seconds() }

// Percentile is the latency below which a fraction p of answers came.
func (r Result) Percentile(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	return r.lat[min(len(r.lat)-1, int(p*float64(len(r.lat))))]
}

// Print writes the result as three lines.
func (r Result) Print(clients int) {
	fmt.Printf("requests %d ok, %d failed, in %s with %d clients, %s\n", r.OK, r.Failed, r.Elapsed.Round(time.Millisecond), clients, r.Mode)
	fmt.Printf("throughput %.0f/s\n", r.Throughput())
	if r.OK > 0 {
		fmt.Printf("latency p50 %s  p90 %s  p99 %s  max %s\n", r.Percentile(0.50), r.Percentile(0.90), r.Percentile(0.99), r.lat[len(r.lat)-1])
	}
}

// ServeFixed is a ceiling: it answers every request on l with body (JSON),
// having read the request (and, with check, only when check passes it),
// until SIGINT or SIGTERM.
func ServeFixed(l net.Listener, body []byte, check func(io.Reader) error) error {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if check == nil {
			_, _ = io.Copy(io.Discard, r.Body)
		} else if err := check(r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusUnprocessableEntity)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); _ = srv.Close() }()
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// WriteRoot writes a made-up root token (nothing verifies it in the
// benchmarks) for user bench, good for a day, as a token file.
func WriteRoot(path string) error {
	tok, err := token.New([]byte("bench key, not a server's"), "bench", "abcd2345", token.Expires(time.Now().Add(24*time.Hour)))
	if err != nil {
		return err
	}
	return os.WriteFile(path, []byte(tok.Reveal()+"\n"), 0o600)
}
