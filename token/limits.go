package token

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Limits are what a token may do besides when: the permissions, indexes and
// projects it is limited to. A nil list is no limit; a list is normalised
// (split at commas, trimmed, de-duplicated, sorted) and never empty. The
// token commands (-a, -i, -p), the config's [servers.NAME] lists and exec's
// narrowing all go through ParseLimits, and become caveats through Caveats.
type Limits struct {
	Allowed  []string `json:"allowed,omitempty"`
	Indexes  []string `json:"indexes,omitempty"`
	Projects []string `json:"projects,omitempty"`
}

// ParseLimits normalises and checks lists as -a, -i and -p (or a config)
// give them; nil means not given. A list that is given but empty, holds an
// empty item, white space or '=', or (for indexes) a name not of the form
// USER/INDEX is an error naming the list.
func ParseLimits(allowed, indexes, projects []string) (Limits, error) {
	var l Limits
	var err error
	if l.Allowed, err = limitList(KeyAllowed, allowed); err != nil {
		return Limits{}, err
	}
	if l.Indexes, err = limitList(KeyIndexes, indexes); err != nil {
		return Limits{}, err
	}
	if err := checkIndexes(l.Indexes); err != nil {
		return Limits{}, &ListError{KeyIndexes, err}
	}
	if l.Projects, err = limitList(KeyProjects, projects); err != nil {
		return Limits{}, err
	}
	return l, nil
}

func limitList(key string, items []string) ([]string, error) {
	if items == nil {
		return nil, nil
	}
	list, err := NormalizeList(items)
	if err != nil {
		return nil, &ListError{key, err}
	}
	if len(list) == 0 {
		return nil, &ListError{key, errors.New("the list is empty (leave it out for no limit)")}
	}
	return list, nil
}

// ListError is a list of Limits that cannot be: Key is allowed, indexes or
// projects (command lines name their flag instead).
type ListError struct {
	Key string
	Err error
}

func (e *ListError) Error() string { return e.Key + ": " + e.Err.Error() }
func (e *ListError) Unwrap() error { return e.Err }

// UnknownPermissions are the allowed permissions devpi-server itself does
// not define (a plugin may).
func (l Limits) UnknownPermissions() []string {
	var out []string
	for _, p := range l.Allowed {
		if !KnownPermission(p) {
			out = append(out, p)
		}
	}
	return out
}

// OutsideError is Intersect's error: nothing of Given is in Have.
type OutsideError struct {
	Key         string
	Given, Have []string
}

func (e *OutsideError) Error() string {
	return fmt.Sprintf("%s %s: outside what is allowed (%s)", e.Key, strings.Join(e.Given, ","), strings.Join(e.Have, ","))
}

// Intersect narrows l by o, list by list: a list not given takes the
// other's; two lists keep what both hold (projects compared by their PEP
// 503 names, as the server compares them). A list left empty is an
// *OutsideError: the result could do nothing.
func (l Limits) Intersect(o Limits) (Limits, error) {
	var out Limits
	var err error
	if out.Allowed, err = intersectList(KeyAllowed, l.Allowed, o.Allowed, false); err != nil {
		return Limits{}, err
	}
	if out.Indexes, err = intersectList(KeyIndexes, l.Indexes, o.Indexes, false); err != nil {
		return Limits{}, err
	}
	if out.Projects, err = intersectList(KeyProjects, l.Projects, o.Projects, true); err != nil {
		return Limits{}, err
	}
	return out, nil
}

func intersectList(key string, a, b []string, project bool) ([]string, error) {
	switch {
	case a == nil:
		return b, nil
	case b == nil:
		return a, nil
	}
	same := func(x, y string) bool { return x == y || project && NormalizeProject(x) == NormalizeProject(y) }
	var out []string
	for _, x := range b {
		if slices.ContainsFunc(a, func(y string) bool { return same(x, y) }) {
			out = append(out, x)
		}
	}
	if len(out) == 0 {
		return nil, &OutsideError{Key: key, Given: b, Have: a}
	}
	return out, nil
}

// Caveats are l's restrictions, one per list given: allowed, indexes,
// projects.
func (l Limits) Caveats() []Restriction {
	var rs []Restriction
	for _, kv := range []struct {
		key  string
		list []string
	}{{KeyAllowed, l.Allowed}, {KeyIndexes, l.Indexes}, {KeyProjects, l.Projects}} {
		if kv.list != nil {
			rs = append(rs, Restriction{kv.key, strings.Join(kv.list, ",")})
		}
	}
	return rs
}

// IsZero reports whether l limits nothing.
func (l Limits) IsZero() bool { return l.Allowed == nil && l.Indexes == nil && l.Projects == nil }
