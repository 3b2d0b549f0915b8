package token

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// unitPattern lists the units devpi-tokens' expiry parser (the delta
// package) accepts. Case matters for one of them, as there: "M" is months,
// "m" is minutes.
var (
	unitPattern = `(?P<unit>years?|y|months?|M|weeks?|w|days?|d|hours?|h|minutes?|mins?|m|seconds?|secs?|s)`
	termRE      = regexp.MustCompile(`^(?P<num>\d+(?:\.\d+)?)[ \t]*` + unitPattern + `(?:[ \t]*,?[ \t]*(?:and)?[ \t]*)`)
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

func addDelta(now time.Time, s string, sign int) (time.Time, error) {
	if s == "" {
		return now, fmt.Errorf("no duration")
	}
	t := now
	for s != "" {
		m := termRE.FindStringSubmatch(s)
		if m == nil {
			return now, fmt.Errorf("want a number and a unit (y, M, w, d, h, min, s), got %q", s)
		}
		s = s[len(m[0]):]
		num, err := strconv.ParseFloat(m[1], 64)
		if err != nil || num > 1e6 {
			return now, fmt.Errorf("number %q out of range", m[1])
		}
		whole, frac := math.Modf(num)
		w := int(whole) * sign
		f := frac * float64(sign)
		switch unit := m[2]; {
		case unit == "y" || strings.HasPrefix(unit, "year"):
			t = t.AddDate(w, 0, 0).Add(time.Duration(f * 365 * 24 * float64(time.Hour)))
		case unit == "M" || strings.HasPrefix(unit, "month"):
			t = t.AddDate(0, w, 0).Add(time.Duration(f * 30 * 24 * float64(time.Hour)))
		default:
			t = t.Add(time.Duration(num * float64(sign) * float64(unitDuration(unit))))
		}
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
