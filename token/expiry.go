package token

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// unitPattern lists the units devpi-tokens' expiry parser (the delta
// package) accepts. Case matters for one of them, as there: "M" is months,
// "m" is minutes.
var (
	unitPattern = `(?P<unit>years?|y|months?|M|weeks?|w|days?|d|hours?|h|minutes?|mins?|m|seconds?|secs?|s)`
	// Compiled on first use, not at every process start.
	termRE = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^(?P<num>\d+(?:\.\d+)?)[ \t]*` + unitPattern + `(?:[ \t]*,?[ \t]*(?:and)?[ \t]*)`)
	})
)

// ParseExpiry reads an expiry argument as devpi-tokens' -e flag does: an
// epoch integer, "never", or a delta such as "1 year", "3 years", "2 weeks",
// "10h", "30min", "1 day and 12 hours"; a leading "-" means the past. never
// is true for "never"; otherwise at is the moment the token stops working.
func ParseExpiry(arg string, now time.Time) (at time.Time, never bool, err error) {
	s := strings.TrimSpace(arg)
	if s == "" {
		return time.Time{}, false, fmt.Errorf("empty expiry")
	}
	if s == "never" {
		return time.Time{}, true, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(n, 0), false, nil
	}
	sign := 1
	if rest, ok := strings.CutPrefix(s, "-"); ok {
		sign, s = -1, strings.TrimSpace(rest)
	}
	at, err = addDelta(now, s, sign)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("can't parse expiry %q: %w", arg, err)
	}
	return at, false, nil
}

// maxYears bounds a delta so that time arithmetic cannot overflow: far
// beyond any sensible expiry, far inside what time.Time holds.
const maxYears = 1000

func addDelta(now time.Time, s string, sign int) (time.Time, error) {
	if s == "" {
		return now, fmt.Errorf("no duration")
	}
	t := now
	for s != "" {
		m := termRE().FindStringSubmatch(s)
		if m == nil {
			return now, fmt.Errorf("want a number and a unit (y, M, w, d, h, min, s), got %q", s)
		}
		s = s[len(m[0]):]
		num, err := strconv.ParseFloat(m[1], 64)
		unit := m[2]
		var years float64
		switch {
		case unit == "y" || strings.HasPrefix(unit, "year"):
			years = num
		case unit == "M" || strings.HasPrefix(unit, "month"):
			years = num / 12
		default:
			years = num * unitDuration(unit).Hours() / (365 * 24)
		}
		if err != nil || years > maxYears {
			return now, fmt.Errorf("%s %s is more than %d years", m[1], unit, maxYears)
		}
		whole, frac := math.Modf(num)
		w := int(whole) * sign
		f := frac * float64(sign)
		switch {
		case unit == "y" || strings.HasPrefix(unit, "year"):
			t = t.AddDate(w, 0, 0).Add(time.Duration(f * 365 * 24 * float64(time.Hour)))
		case unit == "M" || strings.HasPrefix(unit, "month"):
			t = t.AddDate(0, w, 0).Add(time.Duration(f * 30 * 24 * float64(time.Hour)))
		default:
			// Whole units by day arithmetic, the fraction as a duration:
			// both stay far from time.Duration's 292-year limit.
			d := unitDuration(unit)
			if d >= 24*time.Hour {
				t = t.AddDate(0, 0, w*int(d/(24*time.Hour)))
			} else {
				t = t.Add(time.Duration(w) * d)
			}
			t = t.Add(time.Duration(f * float64(d)))
		}
	}
	if t.After(now.AddDate(maxYears, 0, 1)) || t.Before(now.AddDate(-maxYears, 0, -1)) {
		return now, fmt.Errorf("the total is more than %d years", maxYears)
	}
	return t, nil
}

func unitDuration(unit string) time.Duration {
	switch unit[0] {
	case 'w':
		return 7 * 24 * time.Hour
	case 'd':
		return 24 * time.Hour
	case 'h':
		return time.Hour
	case 'm':
		return time.Minute
	default:
		return time.Second
	}
}
