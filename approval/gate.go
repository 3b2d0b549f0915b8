package approval

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"sync"
	"time"
)

// Why Check refuses a code. The daemon answers ErrNoCode with
// approval_required and the others with approval_refused.
var (
	ErrNoCode      = errors.New("a one-time code is needed: give the 6-digit code your authenticator app shows")
	ErrMalformed   = errors.New("not a one-time code: give the 6 digits your authenticator app shows")
	ErrWrong       = errors.New("wrong one-time code: check the entry and the clock of your authenticator app")
	ErrSpent       = errors.New("one-time code already used: wait for the next one in your authenticator app")
	ErrNotEnrolled = errors.New("no authenticator is enrolled: run 'devpi-credd approval setup'")
)

// codesOf is how a Gate's messages call what it refuses.
const codesOf = "one-time codes"

// Gate checks one-time codes: a code of the step before, the current one
// or the next is accepted (clocks drift), each step at most once (RFC 6238
// 5.2: a code of a step at or before the last accepted one is spent), and
// wrong codes are throttled (see Throttle). One Gate serves the daemon for
// its whole life: re-enrolment, lock and unlock keep its counts.
type Gate struct {
	now      func() time.Time
	throttle *Throttle

	mu sync.Mutex
	// last is the last accepted step of each secret, by its SHA-256: a
	// secret's own count, so that confirming a new secret right after the
	// old one's code began the enrolment does not find its step spent,
	// and checking the new one does not forget the old one's.
	last map[[sha256.Size]byte]int64
}

// NewGate returns a Gate on the clock now (time.Now if nil).
func NewGate(now func() time.Time) *Gate {
	if now == nil {
		now = time.Now
	}
	return &Gate{now: now, throttle: NewThrottle(now, codesOf), last: map[[sha256.Size]byte]int64{}}
}

// Check returns nil if code is a right code of rec's secret never accepted
// before, and marks its step used. Every error wraps one of ErrNoCode,
// ErrNotEnrolled, ErrMalformed, ErrWrong, ErrSpent or ErrBackoff (a
// *BackoffError): malformed and wrong codes count towards a block; while
// one lasts, every code is refused unchecked.
func (g *Gate) Check(rec *Record, code string) error {
	if code == "" {
		return ErrNoCode
	}
	if !rec.Enrolled() {
		return ErrNotEnrolled
	}
	// One critical section from Allow to Fail or Succeed: two requests
	// with the same right code cannot both see its step unused.
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.throttle.Allow(); err != nil {
		return err
	}
	if !wellFormed(code) {
		return g.throttle.Fail(ErrMalformed)
	}
	now := stepOf(g.now())
	matched, found := int64(0), false
	for s := now - 1; s <= now+1; s++ {
		// Every step is computed and compared, whatever matched before.
		if subtle.ConstantTimeCompare([]byte(Code(rec.Secret, timeOf(s))), []byte(code)) == 1 {
			matched, found = s, true
		}
	}
	if !found {
		return g.throttle.Fail(ErrWrong)
	}
	id := sha256.Sum256(rec.Secret)
	if last, ok := g.last[id]; ok && matched <= last {
		// The person's own code, replayed or typed twice: not a guess.
		return ErrSpent
	}
	g.last[id] = matched
	// A step before now-1 is out of every later window: such an entry
	// can spend nothing any more.
	for k, last := range g.last {
		if last < now-1 {
			delete(g.last, k)
		}
	}
	g.throttle.Succeed()
	return nil
}

// State reports the wrong codes in a row and the current block.
func (g *Gate) State() GateState { return g.throttle.State() }

// wellFormed reports whether code is Digits ASCII digits.
func wellFormed(code string) bool {
	if len(code) != Digits {
		return false
	}
	for _, c := range []byte(code) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// stepOf is the TOTP time step of t (RFC 6238's T, with T0 = 0).
func stepOf(t time.Time) int64 {
	u, p := t.Unix(), int64(Period/time.Second)
	s := u / p
	if u%p < 0 {
		s-- // floor, not truncation, before 1970
	}
	return s
}

// timeOf is the start of step s.
func timeOf(s int64) time.Time { return time.Unix(s*int64(Period/time.Second), 0) }
