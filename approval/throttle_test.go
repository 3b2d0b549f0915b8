package approval

import (
	"errors"
	"testing"
	"time"
)

// The daemon's use: wrong unlock passphrases.
func TestThrottlePassphrases(t *testing.T) {
	errWrongPassphrase := errors.New("wrong passphrase")
	clk := newClock(stepStart)
	th := NewThrottle(clk.Now, "passphrases")
	for i := 1; i < FailureLimit; i++ {
		if err := th.Allow(); err != nil {
			t.Fatalf("attempt %d not allowed: %v", i, err)
		}
		err := th.Fail(errWrongPassphrase)
		if !errors.Is(err, errWrongPassphrase) || errors.Is(err, ErrBackoff) {
			t.Fatalf("failure %d: %v", i, err)
		}
		if i == 2 {
			if want := "wrong passphrase (2 of 5 before passphrases are refused for 1m0s)"; err.Error() != want {
				t.Fatalf("message %q\nwant %q", err, want)
			}
		}
	}
	var be *BackoffError
	if err := th.Fail(errWrongPassphrase); !errors.As(err, &be) || !errors.Is(err, errWrongPassphrase) {
		t.Fatalf("fifth failure: %v, want a *BackoffError wrapping the cause", err)
	}
	until := stepStart.Add(FirstBlock)
	if want := "wrong passphrase; too many in a row: passphrases are refused until 12:01:00 UTC, try again then"; be.Error() != want {
		t.Fatalf("message %q\nwant %q", be, want)
	}
	clk.Add(30 * time.Second)
	if err := th.Allow(); !errors.As(err, &be) || !be.Until.Equal(until) || be.Cause != nil {
		t.Fatalf("Allow during the block: %v", err)
	}
	if want := "too many wrong passphrases: they are refused until 12:01:00 UTC, try again then"; be.Error() != want {
		t.Fatalf("message %q\nwant %q", be, want)
	}
	// A failure that raced into the block is not counted and does not
	// lengthen it.
	if err := th.Fail(errWrongPassphrase); !errors.As(err, &be) || !be.Until.Equal(until) {
		t.Fatalf("Fail during the block: %v", err)
	}
	if st := th.State(); st.Failures != FailureLimit || !st.BlockedUntil.Equal(until) {
		t.Fatalf("state during the block: %+v", st)
	}
	// After it, the next failure blocks for twice as long; a success
	// forgets everything.
	clk.Set(until)
	if err := th.Allow(); err != nil {
		t.Fatalf("Allow after the block: %v", err)
	}
	if err := th.Fail(errWrongPassphrase); !errors.As(err, &be) || !be.Until.Equal(until.Add(2*FirstBlock)) {
		t.Fatalf("failure after the block: %v, want a block of %v", err, 2*FirstBlock)
	}
	clk.Set(be.Until)
	th.Succeed()
	if st := th.State(); st != (GateState{}) {
		t.Fatalf("state after a success: %+v", st)
	}
	if err := th.Fail(errWrongPassphrase); errors.Is(err, ErrBackoff) {
		t.Fatalf("first failure after a success blocked: %v", err)
	}
}

// A nil clock is the real one.
func TestThrottleNilClock(t *testing.T) {
	th := NewThrottle(nil, "codes")
	for range FailureLimit {
		th.Fail(ErrWrong)
	}
	if until := th.State().BlockedUntil; time.Until(until) <= 0 || time.Until(until) > FirstBlock {
		t.Fatalf("blocked until %v, want within %v from now", until, FirstBlock)
	}
}
