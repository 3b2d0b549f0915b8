package approval

import (
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// clock is the injected time: safe for the concurrent tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func (c *clock) Add(d time.Duration) { c.Set(c.Now().Add(d)) }

// stepStart is the start of a step, in UTC: messages are checked verbatim.
var stepStart = time.Date(2026, 5, 4, 12, 0, 0, 0, time.UTC)

func enrolled() *Record {
	return &Record{Secret: append([]byte(nil), rfcSecret...), Policy: Policy{Uploads: true}}
}

// codeAt is the code of rec's secret d after the clock's now.
func codeAt(rec *Record, c *clock, d time.Duration) string { return Code(rec.Secret, c.Now().Add(d)) }

// wrongCode is a well-formed code of none of the steps around now.
func wrongCode(rec *Record, now time.Time) string {
	for i := 0; ; i++ {
		code := fmt.Sprintf("%06d", i)
		s := stepOf(now)
		if code != Code(rec.Secret, timeOf(s-1)) && code != Code(rec.Secret, timeOf(s)) && code != Code(rec.Secret, timeOf(s+1)) {
			return code
		}
	}
}

func TestGateWindow(t *testing.T) {
	// At the first and the last second of a step, and in its middle.
	for _, at := range []time.Duration{0, 15 * time.Second, 29 * time.Second} {
		for _, c := range []struct {
			offset time.Duration
			want   error
		}{
			{-2 * Period, ErrWrong},
			{-Period, nil},
			{0, nil},
			{Period, nil},
			{2 * Period, ErrWrong},
		} {
			clk := newClock(stepStart.Add(at))
			g, rec := NewGate(clk.Now), enrolled()
			err := g.Check(rec, codeAt(rec, clk, c.offset))
			if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
				t.Errorf("%v into the step, code of %v: %v, want %v", at, c.offset, err, c.want)
			}
		}
	}
}

func TestGateEachStepOnce(t *testing.T) {
	clk := newClock(stepStart.Add(10 * time.Second))
	g, rec := NewGate(clk.Now), enrolled()
	now, prev, next := codeAt(rec, clk, 0), codeAt(rec, clk, -Period), codeAt(rec, clk, Period)
	steps := []struct {
		code string
		want error
	}{
		{now, nil},
		{now, ErrSpent},  // the same code again
		{prev, ErrSpent}, // an older step: never used, but before the last accepted
		{next, nil},      // the next step is still new
		{now, ErrSpent},  // now before the last accepted
		{next, ErrSpent},
	}
	for i, s := range steps {
		err := g.Check(rec, s.code)
		if !errors.Is(err, s.want) || (s.want == nil) != (err == nil) {
			t.Fatalf("check %d: %v, want %v", i, err, s.want)
		}
	}
	// Spent codes are not guesses: nothing counted, nothing blocked.
	for range FailureLimit + 1 {
		if err := g.Check(rec, now); !errors.Is(err, ErrSpent) {
			t.Fatalf("spent code: %v", err)
		}
	}
	if st := g.State(); st != (GateState{}) {
		t.Fatalf("state after spent codes: %+v, want none", st)
	}
	// Two steps on, the code of the new step is taken.
	clk.Add(2 * Period)
	if err := g.Check(rec, codeAt(rec, clk, 0)); err != nil {
		t.Fatalf("next step's code: %v", err)
	}
}

func TestGateRefusals(t *testing.T) {
	clk := newClock(stepStart)
	g, rec := NewGate(clk.Now), enrolled()
	right := codeAt(rec, clk, 0)
	// Not counted: no code, nobody enrolled.
	for _, c := range []struct {
		rec  *Record
		code string
		want error
	}{
		{rec, "", ErrNoCode},
		{nil, right, ErrNotEnrolled},
		{&Record{Policy: Policy{Uploads: true}}, right, ErrNotEnrolled},
		{&Record{Secret: []byte{}, Policy: Policy{Uploads: true}}, "", ErrNoCode},
	} {
		if err := g.Check(c.rec, c.code); err != c.want {
			t.Errorf("Check(%+v, %q) = %v, want %v", c.rec, c.code, err, c.want)
		}
	}
	if st := g.State(); st.Failures != 0 {
		t.Fatalf("counted %d failures for no code or no enrolment", st.Failures)
	}
	// Counted: malformed codes. None of them may match however the
	// digits compare.
	malformed := []string{right[:5], right + "0", " " + right, right[:5] + " ", "12 456", "abcdef", "１２３４５６", right[:3] + "\x00" + right[4:]}
	for i, code := range malformed[:FailureLimit-1] {
		err := g.Check(rec, code)
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("Check(%q) = %v, want ErrMalformed", code, err)
		}
		if want := fmt.Sprintf("(%d of %d before one-time codes are refused for 1m0s)", i+1, FailureLimit); !strings.HasSuffix(err.Error(), want) {
			t.Fatalf("message %q does not end in %q", err, want)
		}
	}
	for _, code := range malformed[FailureLimit-1:] {
		if err := g.Check(rec, code); err == nil {
			t.Fatalf("Check(%q) accepted", code)
		}
	}
	// The fifth started a block.
	if st := g.State(); st.Failures != FailureLimit || !st.BlockedUntil.Equal(stepStart.Add(FirstBlock)) {
		t.Fatalf("state after %d malformed codes: %+v", FailureLimit, st)
	}
}

func TestGateBackoff(t *testing.T) {
	clk := newClock(stepStart)
	g, rec := NewGate(clk.Now), enrolled()
	// Four wrong codes are told how many are left.
	for i := 1; i < FailureLimit; i++ {
		err := g.Check(rec, wrongCode(rec, clk.Now()))
		if !errors.Is(err, ErrWrong) || errors.Is(err, ErrBackoff) {
			t.Fatalf("wrong code %d: %v", i, err)
		}
		want := fmt.Sprintf("wrong one-time code: check the entry and the clock of your authenticator app (%d of 5 before one-time codes are refused for 1m0s)", i)
		if err.Error() != want {
			t.Fatalf("message %q\nwant %q", err, want)
		}
	}
	// The fifth blocks for FirstBlock.
	err := g.Check(rec, wrongCode(rec, clk.Now()))
	var be *BackoffError
	if !errors.As(err, &be) || !errors.Is(err, ErrWrong) || !errors.Is(err, ErrBackoff) {
		t.Fatalf("fifth wrong code: %v, want a *BackoffError wrapping ErrWrong", err)
	}
	if !be.Until.Equal(stepStart.Add(time.Minute)) {
		t.Fatalf("blocked until %v, want %v", be.Until, stepStart.Add(time.Minute))
	}
	if want := "wrong one-time code: check the entry and the clock of your authenticator app; too many in a row: one-time codes are refused until 12:01:00 UTC, try again then"; err.Error() != want {
		t.Fatalf("message %q\nwant %q", err, want)
	}

	// During the block every code is refused unchecked and uncounted, the
	// right one too, and its step is not burnt.
	clk.Set(stepStart.Add(time.Minute - time.Second))
	nextRight := codeAt(rec, clk, Period) // the step that starts when the block ends
	for _, code := range []string{codeAt(rec, clk, 0), nextRight, wrongCode(rec, clk.Now()), "x"} {
		err := g.Check(rec, code)
		if !errors.As(err, &be) || errors.Is(err, ErrWrong) || errors.Is(err, ErrMalformed) {
			t.Fatalf("code during the block: %v, want an unchecked *BackoffError", err)
		}
		if want := "too many wrong one-time codes: they are refused until 12:01:00 UTC, try again then"; err.Error() != want {
			t.Fatalf("message %q\nwant %q", err, want)
		}
	}
	if st := g.State(); st.Failures != FailureLimit || !st.BlockedUntil.Equal(stepStart.Add(time.Minute)) {
		t.Fatalf("state during the block: %+v", st)
	}

	// After the block, the code refused during it is taken.
	clk.Set(stepStart.Add(time.Minute))
	if st := g.State(); !st.BlockedUntil.IsZero() {
		t.Fatalf("still blocked at its end: %+v", st)
	}
	if err := g.Check(rec, nextRight); err != nil {
		t.Fatalf("right code after the block: %v", err)
	}
	if st := g.State(); st != (GateState{}) {
		t.Fatalf("a right code left %+v", st)
	}
}

func TestGateDoubling(t *testing.T) {
	clk := newClock(stepStart)
	g, rec := NewGate(clk.Now), enrolled()
	fail := func() error { return g.Check(rec, wrongCode(rec, clk.Now())) }
	for range FailureLimit - 1 {
		fail()
	}
	// Each failure after a block blocks again, twice as long, up to an hour.
	for i, want := range []time.Duration{1, 2, 4, 8, 16, 32, 60, 60} {
		want *= time.Minute
		start := clk.Now()
		var be *BackoffError
		if err := fail(); !errors.As(err, &be) || !be.Until.Equal(start.Add(want)) {
			t.Fatalf("block %d: %v, want until %v", i+1, err, start.Add(want))
		}
		if st := g.State(); st.Failures != FailureLimit+i {
			t.Fatalf("block %d: %d failures counted", i+1, st.Failures)
		}
		clk.Set(be.Until)
	}
	// A right code forgets it all: the next block is after five again,
	// for a minute.
	if err := g.Check(rec, codeAt(rec, clk, 0)); err != nil {
		t.Fatalf("right code: %v", err)
	}
	for i := 1; i < FailureLimit; i++ {
		if err := fail(); errors.Is(err, ErrBackoff) {
			t.Fatalf("wrong code %d after a reset blocked: %v", i, err)
		}
	}
	var be *BackoffError
	if err := fail(); !errors.As(err, &be) || !be.Until.Equal(clk.Now().Add(time.Minute)) {
		t.Fatalf("first block after a reset: %v", err)
	}
}

func TestGateConcurrentSameCode(t *testing.T) {
	clk := newClock(stepStart.Add(7 * time.Second))
	g, rec := NewGate(clk.Now), enrolled()
	code := codeAt(rec, clk, 0)
	const n = 16
	errs := make(chan error, n)
	var start sync.WaitGroup
	start.Add(1)
	var done sync.WaitGroup
	for range n {
		done.Go(func() {
			start.Wait()
			errs <- g.Check(rec, code)
		})
	}
	start.Done()
	done.Wait()
	close(errs)
	won := 0
	for err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, ErrSpent):
			t.Errorf("loser: %v, want ErrSpent", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d requests won with one code, want 1", won)
	}
}

// The enrolment: the old secret's code begins it, the new secret's first
// code of the same step confirms it, and the old code stays spent.
func TestGateSecretsCountApart(t *testing.T) {
	clk := newClock(stepStart.Add(3 * time.Second))
	g, old := NewGate(clk.Now), enrolled()
	secret, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	fresh := &Record{Secret: secret, Policy: Policy{Uploads: true}}
	oldCode := codeAt(old, clk, 0)
	if err := g.Check(old, oldCode); err != nil {
		t.Fatalf("old secret's code: %v", err)
	}
	if err := g.Check(fresh, codeAt(fresh, clk, 0)); err != nil {
		t.Fatalf("new secret's code of the same step: %v", err)
	}
	if err := g.Check(old, oldCode); !errors.Is(err, ErrSpent) {
		t.Fatalf("old code again after the new secret's: %v, want ErrSpent", err)
	}
	// Wrong codes of either secret count together.
	for range FailureLimit - 1 {
		g.Check(fresh, wrongCode(fresh, clk.Now()))
	}
	if err := g.Check(old, wrongCode(old, clk.Now())); !errors.Is(err, ErrBackoff) {
		t.Fatalf("fifth wrong code, of the other secret: %v, want a block", err)
	}
}

// No message holds the code it refused or the secret, and each is one line.
func TestGateMessages(t *testing.T) {
	clk := newClock(stepStart)
	g, rec := NewGate(clk.Now), enrolled()
	secret32 := base32.StdEncoding.EncodeToString(rec.Secret)
	right := codeAt(rec, clk, 0)
	codes := []string{"", "12345", wrongCode(rec, clk.Now()), right, right}
	for range FailureLimit {
		codes = append(codes, wrongCode(rec, clk.Now()))
	}
	codes = append(codes, codeAt(rec, clk, Period))
	for _, code := range codes {
		err := g.Check(rec, code)
		if err == nil {
			continue
		}
		msg := err.Error()
		if (code != "" && strings.Contains(msg, code)) || strings.Contains(msg, secret32[:8]) || strings.Contains(msg, string(rec.Secret)) || strings.Contains(msg, "\n") {
			t.Errorf("message for %q shows it or the secret, or is not one line: %q", code, msg)
		}
	}
}

// FuzzGate: Check never panics and accepts only a code of the window.
func FuzzGate(f *testing.F) {
	clk := newClock(stepStart)
	rec := enrolled()
	for _, d := range []time.Duration{-Period, 0, Period, 2 * Period} {
		f.Add(codeAt(rec, clk, d), int64(0))
	}
	f.Add("", int64(1))
	f.Add("000000", int64(-1<<40))
	f.Add("１２３４５６", int64(17))
	f.Fuzz(func(t *testing.T, code string, offset int64) {
		// Within 34 years of stepStart, after 1970.
		clk := newClock(time.Unix(stepStart.Unix()+offset%(1<<30), 0))
		g := NewGate(clk.Now)
		s := stepOf(clk.Now())
		right := code == Code(rec.Secret, timeOf(s-1)) || code == Code(rec.Secret, timeOf(s)) || code == Code(rec.Secret, timeOf(s+1))
		err := g.Check(rec, code)
		if (err == nil) != right {
			t.Fatalf("Check(%q) at step %d = %v; a code of the window: %v", code, s, err, right)
		}
		if err == nil {
			if err := g.Check(rec, code); !errors.Is(err, ErrSpent) {
				t.Fatalf("Check(%q) again = %v, want ErrSpent", code, err)
			}
		}
	})
}
