package daemon

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/devpi-credd/devpi-credd/config"
	"github.com/devpi-credd/devpi-credd/internal/safeurl"
	"github.com/devpi-credd/devpi-credd/token"
)

// Op is what a minted token is for.
type Op string

const (
	OpRead    Op = "read"    // pkg_read: simple pages, files, project pages
	OpUpload  Op = "upload"  // upload to USER/INDEX
	OpSession Op = "session" // a client's session: anything the root token may
)

// Permission is the devpi permission an Op needs ("" for a session).
func (o Op) Permission() string {
	switch o {
	case OpUpload:
		return "upload"
	case OpSession:
		return ""
	}
	return "pkg_read"
}

// Target is what a URL addresses on a server.
type Target struct {
	Op      Op
	Index   string // USER/INDEX, or "" for the whole server
	Project string // as in the URL, or ""
}

// Names the server accepts in a path: devpi user and index names, and
// project names (PEP 508). Anything else could not become a caveat, and a
// token must never lose a restriction because a name was odd.
// Compiled on first use: every process pays for package-level regexps at
// start, and the keyring helper, started per lookup, never needs these.
var (
	validIndexPart = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`) })
	validProject   = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$`)
	})
)

// maxName bounds a user, index or project name in a URL: each becomes part
// of a caveat and of an audit line, and no real one comes near it.
const maxName = 128

// Classify reads the path of u below the server root:
//
//	""  or +anything       read, whole server (a bare host, /+api, ...)
//	USER                   read, whole server
//	USER/INDEX             upload to USER/INDEX (twine's and uv's publish URL)
//	USER/INDEX/+simple/P/  read USER/INDEX, project P
//	USER/INDEX/+f/...      read USER/INDEX (files)
//	USER/INDEX/P[/...]     read USER/INDEX, project P (JSON pages)
//
// A user, index or project that is not a valid name is an error.
func Classify(root, u *url.URL) (Target, error) {
	rel := strings.TrimPrefix(u.Path, strings.TrimSuffix(root.Path, "/"))
	var segs []string
	for _, s := range strings.Split(rel, "/") {
		switch s {
		case "":
		case ".", "..":
			return Target{}, fmt.Errorf("the path %q has a '.' or '..' segment", u.Path)
		default:
			segs = append(segs, s)
		}
	}
	if len(segs) < 2 || strings.HasPrefix(segs[0], "+") || strings.HasPrefix(segs[1], "+") {
		return Target{Op: OpRead}, nil
	}
	for _, seg := range segs[:min(len(segs), 4)] {
		if len(seg) > maxName {
			return Target{}, fmt.Errorf("a name in the path is longer than %d characters", maxName)
		}
	}
	if !validIndexPart().MatchString(segs[0]) || !validIndexPart().MatchString(segs[1]) {
		return Target{}, fmt.Errorf("%q is not a devpi USER/INDEX", segs[0]+"/"+segs[1])
	}
	t := Target{Op: OpRead, Index: segs[0] + "/" + segs[1]}
	switch {
	case len(segs) == 2:
		t.Op = OpUpload
	case segs[2] == "+simple":
		if len(segs) > 3 {
			t.Project = segs[3]
		}
	case strings.HasPrefix(segs[2], "+"):
	default:
		t.Project = segs[2]
	}
	if t.Project != "" && !validProject().MatchString(t.Project) {
		return Target{}, fmt.Errorf("%q is not a project name", t.Project)
	}
	return t, nil
}

// Plan is the result of scoping one request: the caveats to add and when
// the token expires.
type Plan struct {
	Target  Target
	Expires time.Time
	Caveats []token.Restriction
}

// ErrRefused marks a request the root token cannot serve.
var ErrRefused = errors.New("refused")

func refusedf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrRefused, fmt.Sprintf(format, args...))
}

// plan scopes a token for target from root, on server srv: the operation's
// permission, the index (with bases for reads), the project, the server's
// configured limits and an expiry of now+ttl that never outlives the root
// token nor the deadline (when set). It refuses what the root token's own
// caveats would make the server refuse, so callers get a clear reason
// instead of a dead token.
func plan(root *token.Token, srv *config.Server, target Target, bases []string, username string, now time.Time, ttl time.Duration, deadline time.Time) (*Plan, error) {
	scope, err := usableRoot(root, srv, username, now)
	if err != nil {
		return nil, err
	}
	perm := target.Op.Permission()
	if err := within(scope, srv, target, perm); err != nil {
		return nil, err
	}
	expires := now.Add(ttl)
	if scope.Expires != nil && scope.Expires.Before(expires) {
		expires = *scope.Expires
	}
	if !deadline.IsZero() {
		if !now.Before(deadline) {
			return nil, refusedf("the job's tokens ended at %s", deadline.Format(time.RFC3339))
		}
		if deadline.Before(expires) {
			expires = deadline
		}
	}
	// What the target needs, then the server's configured limits as
	// caveats of their own (they bind reads of the whole server and of
	// bases too). Every limit must make it into the token: one that cannot
	// be built fails the request instead of being left out.
	var own token.Limits
	if perm != "" {
		own.Allowed = []string{perm}
	}
	if target.Index != "" {
		own.Indexes = append([]string{target.Index}, bases...)
	}
	if target.Project != "" {
		own.Projects = []string{target.Project}
	}
	if own, err = token.ParseLimits(own.Allowed, own.Indexes, own.Projects); err != nil {
		return nil, fmt.Errorf("%w: cannot scope the token: %v", ErrRefused, err)
	}
	p := &Plan{Target: target, Expires: expires, Caveats: []token.Restriction{token.Expires(expires)}}
	for _, r := range append(own.Caveats(), srv.Limits.Caveats()...) {
		if !slices.ContainsFunc(p.Caveats, func(c token.Restriction) bool { return c.Caveat() == r.Caveat() }) {
			p.Caveats = append(p.Caveats, r) // the same caveat twice narrows nothing
		}
	}
	return p, nil
}

// usableRoot refuses a root token the server would refuse now, or under
// username, and returns its scope.
func usableRoot(root *token.Token, srv *config.Server, username string, now time.Time) (token.Scope, error) {
	scope := root.Scope()
	switch {
	case username != "" && username != root.User():
		return scope, refusedf("the token for %s is user %q's; devpi-server refuses it under the user name %q (403 Token doesn't match user name)", srv.Name, root.User(), safeurl.Cap(username, 64))
	case len(scope.Problems) > 0:
		return scope, refusedf("the root token for %s has a caveat devpi-server refuses: %s", srv.Name, scope.Problems[0])
	case scope.Expires != nil && !now.Before(*scope.Expires):
		return scope, refusedf("the root token for %s expired at %s; run 'devpi-credd token login' with a new one", srv.Name, scope.Expires.Format(time.RFC3339))
	case scope.NotBefore != nil && now.Before(*scope.NotBefore):
		return scope, refusedf("the root token for %s is not valid before %s", srv.Name, scope.NotBefore.Format(time.RFC3339))
	}
	return scope, nil
}

// within refuses a target outside what the root token's scope or the
// server's configured limits allow.
func within(scope token.Scope, srv *config.Server, target Target, perm string) error {
	for _, allowed := range [][]string{scope.Allowed, srv.Limits.Allowed} {
		if perm != "" && allowed != nil && !slices.Contains(allowed, perm) {
			return refusedf("%s needs permission %q, which the root token or config for %s does not allow (allowed: %s)", target.Op, perm, srv.Name, strings.Join(allowed, ","))
		}
	}
	if target.Index != "" {
		for _, limit := range [][]string{scope.Indexes, srv.Limits.Indexes} {
			if limit != nil && !slices.Contains(limit, target.Index) {
				return refusedf("index %s is outside what the root token or config for %s allows (indexes: %s)", target.Index, srv.Name, strings.Join(limit, ","))
			}
		}
	}
	if target.Project != "" {
		p := token.NormalizeProject(target.Project)
		for _, limit := range [][]string{scope.Projects, normalized(srv.Limits.Projects)} {
			if limit != nil && !slices.Contains(limit, p) {
				return refusedf("project %s is outside what the root token or config for %s allows", p, srv.Name)
			}
		}
	}
	return nil
}

func normalized(ps []string) []string {
	if ps == nil {
		return nil
	}
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = token.NormalizeProject(p)
	}
	return out
}
