package token

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// CaveatKind names the forms of caveat the server understands.
type CaveatKind string

const (
	KindDevpi         CaveatKind = "devpi"            // key=value, devpi-tokens' own
	KindPyPIPerms     CaveatKind = "pypi-permissions" // {"version":1,"permissions":...}
	KindPyPIExpiry    CaveatKind = "pypi-expiry"      // {"nbf":..,"exp":..}
	KindPyPILegacyExp CaveatKind = "pypi-legacy-expiry"
	KindPyPIProjects  CaveatKind = "pypi-projects" // [1, [projects]]
	KindUnknown       CaveatKind = "unknown"
)

// Caveat is one caveat read back from a token, with what the server would
// make of it.
type Caveat struct {
	Raw  string     `json:"caveat"`
	Kind CaveatKind `json:"kind"`
	// Key and Value are set for devpi key=value caveats.
	Key   string `json:"key,omitempty"`
	Value string `json:"value,omitempty"`
	// The parsed meaning; unset fields do not apply.
	Never     bool       `json:"never,omitempty"`
	Expires   *time.Time `json:"expires,omitempty"`
	NotBefore *time.Time `json:"not_before,omitempty"`
	List      []string   `json:"list,omitempty"`
	// UserScope marks a PyPI permissions caveat of "user": no narrowing.
	UserScope bool `json:"user_scope,omitempty"`
	// Problem says why the server would refuse this caveat, if it would.
	Problem string `json:"problem,omitempty"`
}

var devpiKeys = []string{KeyExpires, KeyNotBefore, KeyAllowed, KeyIndexes, KeyProjects}

// ParseCaveat classifies one caveat the way devpi-tokens' verifier does.
func ParseCaveat(raw string) Caveat {
	c := Caveat{Raw: raw, Kind: KindUnknown}
	if key, value, ok := strings.Cut(raw, "="); ok && slices.Contains(devpiKeys, key) {
		c.Kind, c.Key, c.Value = KindDevpi, key, value
		switch key {
		case KeyExpires:
			if value == "never" {
				c.Never = true
			} else {
				c.Expires = epoch(value, &c)
			}
		case KeyNotBefore:
			c.NotBefore = epoch(value, &c)
		case KeyAllowed:
			// The server splits allowed without trimming, unlike the others.
			c.List = strings.Split(value, ",")
		default:
			for _, item := range strings.Split(value, ",") {
				c.List = append(c.List, strings.TrimSpace(item))
			}
		}
		return c
	}
	var data any
	if err := json.Unmarshal([]byte(raw), &data); err != nil {
		c.Problem = "not a caveat devpi-server knows; the server refuses this token"
		return c
	}
	switch d := data.(type) {
	case map[string]any:
		if v, ok := d["version"]; ok {
			c.Kind = KindPyPIPerms
			if v != float64(1) {
				c.Problem = "unsupported permissions version"
				return c
			}
			switch p := d["permissions"].(type) {
			case string:
				if p == "user" {
					c.UserScope = true
				} else {
					c.Problem = "invalid permissions"
				}
			case map[string]any:
				c.List, c.Problem = stringList(p["projects"])
			default:
				c.Problem = "invalid permissions"
			}
			return c
		}
		if nbf, ok := pyInt(d["nbf"]); ok {
			if exp, ok := pyInt(d["exp"]); ok {
				c.Kind = KindPyPIExpiry
				c.NotBefore, c.Expires = unix(nbf), unix(exp)
				return c
			}
		}
	case []any:
		if len(d) == 3 && d[0] == float64(0) {
			exp, ok1 := jsonInt(d[1])
			nbf, ok2 := jsonInt(d[2])
			if ok1 && ok2 {
				c.Kind = KindPyPILegacyExp
				c.Expires, c.NotBefore = unix(exp), unix(nbf)
				return c
			}
		}
		if len(d) == 2 && d[0] == float64(1) {
			c.Kind = KindPyPIProjects
			c.List, c.Problem = stringList(d[1])
			return c
		}
	}
	c.Problem = "not a caveat devpi-server knows; the server refuses this token"
	return c
}

func epoch(value string, c *Caveat) *time.Time {
	n, err := strconv.ParseInt(value, 10, 64)
	if err != nil {
		c.Problem = fmt.Sprintf("%s is not an epoch timestamp", c.Key)
		return nil
	}
	return unix(n)
}

func unix(n int64) *time.Time {
	t := time.Unix(n, 0).UTC()
	return &t
}

// pyInt reads a value as the server's int() does for the PyPI expiry
// caveat: numbers (truncated) and strings of digits.
func pyInt(v any) (int64, bool) {
	switch x := v.(type) {
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) || math.Abs(x) > 1e15 {
			return 0, false
		}
		return int64(x), true
	case string:
		n, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64)
		return n, err == nil
	}
	return 0, false
}

func jsonInt(v any) (int64, bool) {
	f, ok := v.(float64)
	if !ok || f != float64(int64(f)) {
		return 0, false
	}
	return int64(f), true
}

func stringList(v any) ([]string, string) {
	items, ok := v.([]any)
	if !ok {
		return nil, "invalid projects in predicate"
	}
	out := make([]string, 0, len(items))
	for _, it := range items {
		s, ok := it.(string)
		if !ok {
			return nil, "invalid projects in predicate"
		}
		out = append(out, s)
	}
	return out, ""
}

// Scope is what a token may do once all its caveats are applied together:
// the server checks each caveat, so lists intersect and times tighten. A nil
// list means "not restricted".
type Scope struct {
	Never     bool       `json:"never_expires,omitempty"`
	Expires   *time.Time `json:"expires,omitempty"`
	NotBefore *time.Time `json:"not_before,omitempty"`
	Allowed   []string   `json:"allowed"`
	Indexes   []string   `json:"indexes"`
	// Projects holds PEP 503 normalised names.
	Projects []string `json:"projects"`
	// Problems lists caveats the server would refuse outright.
	Problems []string `json:"problems,omitempty"`
}

// Scope computes the effective restrictions of all the token's caveats.
func (t *Token) Scope() Scope { return ScopeOf(t.ParsedCaveats()) }

// ParsedCaveats returns every caveat, classified.
func (t *Token) ParsedCaveats() []Caveat {
	raws := t.Caveats()
	out := make([]Caveat, len(raws))
	for i, r := range raws {
		out[i] = ParseCaveat(r)
	}
	return out
}

// ScopeOf folds caveats into one Scope.
func ScopeOf(cs []Caveat) Scope {
	var s Scope
	sawExpiry := false
	for _, c := range cs {
		if c.Problem != "" {
			s.Problems = append(s.Problems, fmt.Sprintf("%s: %s", c.Raw, c.Problem))
			continue
		}
		if c.Never {
			sawExpiry = true
		}
		if c.Expires != nil {
			sawExpiry = true
			if s.Expires == nil || c.Expires.Before(*s.Expires) {
				s.Expires = c.Expires
			}
		}
		if c.NotBefore != nil && (s.NotBefore == nil || c.NotBefore.After(*s.NotBefore)) {
			s.NotBefore = c.NotBefore
		}
		switch {
		case c.Key == KeyAllowed:
			s.Allowed = intersect(s.Allowed, c.List, false)
		case c.Key == KeyIndexes:
			s.Indexes = intersect(s.Indexes, c.List, false)
		case c.Key == KeyProjects || c.Kind == KindPyPIPerms && !c.UserScope || c.Kind == KindPyPIProjects:
			s.Projects = intersect(s.Projects, c.List, true)
		}
	}
	s.Never = sawExpiry && s.Expires == nil
	return s
}

func intersect(have, add []string, project bool) []string {
	norm := slices.Clone(add)
	if project {
		for i := range norm {
			norm[i] = NormalizeProject(norm[i])
		}
	}
	slices.Sort(norm)
	norm = slices.Compact(norm)
	if have == nil {
		return norm
	}
	out := []string{}
	for _, h := range have {
		if slices.Contains(norm, h) {
			out = append(out, h)
		}
	}
	return out
}
