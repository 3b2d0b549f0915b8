//go:build e2e

package e2e

import (
	"crypto/rand"
	"fmt"
	"math/big"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/devpi-credd/devpi-credd/approval"
)

// authenticator is the person's authenticator app: the secret read from
// the otpauth:// URI that 'approval setup' showed. Each step's code is
// accepted once, and only the steps now-1, now and now+1 are, so the
// codes it gives are of increasing steps, each still accepted for a
// while after it is typed; when none is left in the window it waits for
// the next step, up to a step's length.
type authenticator struct {
	secret []byte
	mu     sync.Mutex
	last   int64 // the last step given out
}

// codeMargin is how long a code must stay accepted after it is given:
// the program it is typed into sends it within that, also on a loaded
// machine.
const codeMargin = 8 * time.Second

func newAuthenticator(t *testing.T, uri string) *authenticator {
	t.Helper()
	secret, err := approval.ParseURI(uri)
	if err != nil {
		t.Fatalf("the URI approval setup showed: %v", err)
	}
	return &authenticator{secret: secret}
}

func step(at time.Time) int64 { return at.Unix() / int64(approval.Period/time.Second) }

func stepTime(s int64) time.Time { return time.Unix(s*int64(approval.Period/time.Second), 0) }

// code returns a code never given before, of a step accepted for at
// least codeMargin from now.
func (a *authenticator) code(t *testing.T) string {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	deadline := time.Now().Add(approval.Period + codeMargin + 5*time.Second)
	for {
		now := time.Now()
		n := step(now)
		for s := max(n-1, a.last+1); s <= n+1; s++ {
			// Step s is accepted until step s+1 ends.
			if stepTime(s+2).Sub(now) >= codeMargin {
				a.last = s
				return approval.Code(a.secret, stepTime(s))
			}
		}
		if now.After(deadline) {
			t.Fatalf("no unused code within the window by %s", now)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// wrongCodes returns n codes none of which is a code of the secret for
// any step near now: wrong for the next minutes.
func (a *authenticator) wrongCodes(n int) []string {
	now := step(time.Now())
	var near []string
	for s := now - 4; s <= now+4; s++ {
		near = append(near, approval.Code(a.secret, stepTime(s)))
	}
	var out []string
	for len(out) < n {
		v, _ := rand.Int(rand.Reader, big.NewInt(1_000_000))
		c := fmt.Sprintf("%06d", v.Int64())
		if !slices.Contains(near, c) && !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}
