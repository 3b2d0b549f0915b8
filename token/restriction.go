package token

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// The caveat keys devpi-tokens knows. The server refuses a token that holds
// any other key=value caveat, so these are the only ones Derive may add.
const (
	KeyExpires   = "expires"
	KeyNotBefore = "not_before"
	KeyAllowed   = "allowed"
	KeyIndexes   = "indexes"
	KeyProjects  = "projects"
)

// Permissions devpi-server knows. Plugins may add more.
var (
	PublicPermissions = []string{"del_entry", "del_project", "del_verdata", "index_create",
		"index_delete", "index_modify", "pkg_read", "toxresult_upload", "upload"}
	HiddenPermissions = []string{"user_create", "user_delete", "user_login", "user_modify"}
)

// KnownPermission reports whether devpi-server itself defines p.
func KnownPermission(p string) bool {
	return slices.Contains(PublicPermissions, p) || slices.Contains(HiddenPermissions, p)
}

// Restriction is one first-party caveat in devpi-tokens' key=value form.
// Build one with Expires, NeverExpires, NotBefore, Allowed, Indexes or
// Projects.
type Restriction struct {
	key   string
	value string
}

// Key is the caveat key, such as "expires".
func (r Restriction) Key() string { return r.key }

// Caveat is the caveat text as the server reads it.
func (r Restriction) Caveat() string { return r.key + "=" + r.value }

func (r Restriction) String() string { return r.Caveat() }

// Expires limits the token to before t (whole seconds).
func Expires(t time.Time) Restriction {
	return Restriction{KeyExpires, strconv.FormatInt(t.Unix(), 10)}
}

// NeverExpires is the "expires=never" a root token may carry; it never
// narrows anything when derived.
func NeverExpires() Restriction { return Restriction{KeyExpires, "never"} }

// NotBefore makes the token invalid before t.
func NotBefore(t time.Time) Restriction {
	return Restriction{KeyNotBefore, strconv.FormatInt(t.Unix(), 10)}
}

// Allowed limits the token to the given permissions.
func Allowed(perms ...string) (Restriction, error) { return listRestriction(KeyAllowed, perms) }

// Indexes limits the token to the given USER/INDEX names.
func Indexes(indexes ...string) (Restriction, error) {
	r, err := listRestriction(KeyIndexes, indexes)
	if err != nil {
		return r, err
	}
	if err := checkIndexes(strings.Split(r.value, ",")); err != nil {
		return Restriction{}, err
	}
	return r, nil
}

// checkIndexes refuses an index that is not of the form USER/INDEX: the
// server compares indexes in that form, so a bare name would make a token
// that no index accepts.
func checkIndexes(list []string) error {
	for _, ix := range list {
		if strings.Count(ix, "/") != 1 || strings.HasPrefix(ix, "/") || strings.HasSuffix(ix, "/") {
			return fmt.Errorf("index %q is not of the form USER/INDEX", ix)
		}
	}
	return nil
}

// Projects limits the token to the given projects (compared by the server
// after PEP 503 normalisation).
func Projects(projects ...string) (Restriction, error) {
	return listRestriction(KeyProjects, projects)
}

func listRestriction(key string, items []string) (Restriction, error) {
	list, err := NormalizeList(items)
	if err != nil {
		return Restriction{}, fmt.Errorf("%s: %w", key, err)
	}
	if len(list) == 0 {
		return Restriction{}, fmt.Errorf("%s: the list is empty", key)
	}
	return Restriction{key, strings.Join(list, ",")}, nil
}

// NormalizeList splits each item at commas, trims white space, removes
// duplicates and sorts, as devpi-tokens does with -a, -i and -p. An empty
// item is an error: the server refuses it.
func NormalizeList(items []string) ([]string, error) {
	var out []string
	for _, item := range items {
		for _, part := range strings.Split(item, ",") {
			part = strings.TrimSpace(part)
			if part == "" {
				return nil, fmt.Errorf("empty item in %q", item)
			}
			if strings.ContainsAny(part, "=\n\r\t ") {
				return nil, fmt.Errorf("item %q contains white space or '='", part)
			}
			out = append(out, part)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// NormalizeProject is the PEP 503 name normalisation the server applies
// before comparing projects: runs of "-", "_" and "." become one "-", and
// letters become lower case.
func NormalizeProject(name string) string {
	var b strings.Builder
	b.Grow(len(name))
	sep := false
	for _, r := range name {
		if r == '-' || r == '_' || r == '.' {
			sep = true
			continue
		}
		if sep {
			b.WriteByte('-')
			sep = false
		}
		b.WriteRune(unicode.ToLower(r))
	}
	if sep {
		b.WriteByte('-')
	}
	return b.String()
}
