package approval

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// How many failures a Throttle takes and how long it then refuses.
const (
	// FailureLimit failures in a row start the first block.
	FailureLimit = 5
	// FirstBlock is the first block's length; each failure after a block
	// starts a new one twice as long as the last, up to MaxBlock.
	FirstBlock = time.Minute
	MaxBlock   = time.Hour
)

// ErrBackoff is wrapped by every *BackoffError.
var ErrBackoff = errors.New("refused after too many failures in a row")

// BackoffError refuses an attempt while a Throttle blocks.
type BackoffError struct {
	// Until is when attempts are taken again.
	Until time.Time
	// Of names what is refused, in the plural ("one-time codes").
	Of string
	// Cause is the failure that started (or came during) the block; nil
	// for an attempt refused without being checked.
	Cause error
}

func (e *BackoffError) Error() string {
	until := e.Until.Format("15:04:05 MST")
	if e.Cause != nil {
		return fmt.Sprintf("%v; too many in a row: %s are refused until %s, try again then", e.Cause, e.Of, until)
	}
	return fmt.Sprintf("too many wrong %s: they are refused until %s, try again then", e.Of, until)
}

// Unwrap lets errors.Is find ErrBackoff and the Cause.
func (e *BackoffError) Unwrap() []error {
	if e.Cause == nil {
		return []error{ErrBackoff}
	}
	return []error{ErrBackoff, e.Cause}
}

// GateState is a Throttle's (and so a Gate's) count of failures and block.
type GateState struct {
	// Failures in a row since the last success, the ones that started
	// blocks included.
	Failures int
	// BlockedUntil is when the current block ends; zero when there is none.
	BlockedUntil time.Time
}

// Throttle counts failures in a row and blocks attempts after too many:
// FailureLimit failures start a block of FirstBlock, each failure after a
// block starts one twice as long (at most MaxBlock), and a success forgets
// them all. The Gate throttles codes with it; the daemon throttles unlock
// passphrases with another.
//
// It is safe for concurrent use, but it bounds guesses only if Allow, the
// check and Fail or Succeed are one critical section: hold a lock across
// them (the Gate does), or concurrent attempts all pass Allow before the
// first one fails.
type Throttle struct {
	now func() time.Time
	of  string

	mu       sync.Mutex
	failures int
	block    time.Duration // the last block's length, 0 if none since a success
	until    time.Time
}

// NewThrottle returns a Throttle on the clock now (time.Now if nil) whose
// messages call what it refuses of, in the plural ("passphrases").
func NewThrottle(now func() time.Time, of string) *Throttle {
	if now == nil {
		now = time.Now
	}
	return &Throttle{now: now, of: of}
}

// Allow returns a *BackoffError while a block lasts, else nil.
func (t *Throttle) Allow() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.now().Before(t.until) {
		return &BackoffError{Until: t.until, Of: t.of}
	}
	return nil
}

// Fail counts a failure whose reason is cause and returns cause, told how
// many failures remain before a block, or, if this one starts a block, a
// *BackoffError wrapping it. A failure during a block is not counted.
func (t *Throttle) Fail(cause error) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	if now.Before(t.until) {
		return &BackoffError{Until: t.until, Of: t.of, Cause: cause}
	}
	t.failures++
	if t.failures < FailureLimit {
		// No block since the last success: the next one is the first.
		return fmt.Errorf("%w (%d of %d before %s are refused for %v)", cause, t.failures, FailureLimit, t.of, FirstBlock)
	}
	t.block = min(max(2*t.block, FirstBlock), MaxBlock)
	t.until = now.Add(t.block)
	return &BackoffError{Until: t.until, Of: t.of, Cause: cause}
}

// Succeed forgets the failures and blocks.
func (t *Throttle) Succeed() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failures, t.block, t.until = 0, 0, time.Time{}
}

// State reports the failures and the current block.
func (t *Throttle) State() GateState {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := GateState{Failures: t.failures}
	if t.now().Before(t.until) {
		s.BlockedUntil = t.until
	}
	return s
}
