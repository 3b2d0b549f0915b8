package token

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseLimits(t *testing.T) {
	l, err := ParseLimits([]string{"upload, pkg_read", "upload"}, []string{"alice/dev,alice/prod", " alice/dev"}, []string{"Foo.Bar"})
	if err != nil {
		t.Fatal(err)
	}
	want := Limits{Allowed: []string{"pkg_read", "upload"}, Indexes: []string{"alice/dev", "alice/prod"}, Projects: []string{"Foo.Bar"}}
	if !reflect.DeepEqual(l, want) {
		t.Errorf("ParseLimits = %+v", l)
	}
	var got []string
	for _, r := range l.Caveats() {
		got = append(got, r.Caveat())
	}
	if strings.Join(got, " ") != "allowed=pkg_read,upload indexes=alice/dev,alice/prod projects=Foo.Bar" {
		t.Errorf("Caveats = %v", got)
	}
	if z, err := ParseLimits(nil, nil, nil); err != nil || !z.IsZero() || len(z.Caveats()) != 0 {
		t.Errorf("no lists: %+v, %v", z, err)
	}
	for name, args := range map[string][3][]string{
		"empty allowed":  {{}, nil, nil},
		"empty item":     {nil, {"a/b,"}, nil},
		"bare index":     {nil, {"dev"}, nil},
		"white space":    {nil, nil, {"foo bar"}},
		"equals sign":    {{"upload=x"}, nil, nil},
		"empty projects": {nil, nil, {}},
	} {
		var le *ListError
		if _, err := ParseLimits(args[0], args[1], args[2]); !errors.As(err, &le) {
			t.Errorf("%s: %v, want a *ListError", name, err)
		}
	}
	if u := (Limits{Allowed: []string{"upload", "my_plugin_perm"}}).UnknownPermissions(); !reflect.DeepEqual(u, []string{"my_plugin_perm"}) {
		t.Errorf("UnknownPermissions = %v", u)
	}
}

func TestIntersect(t *testing.T) {
	config := Limits{Indexes: []string{"alice/dev", "alice/prod"}, Allowed: []string{"pkg_read"}, Projects: []string{"Foo.Bar"}}
	got, err := config.Intersect(Limits{Indexes: []string{"alice/dev"}, Projects: []string{"foo-bar"}})
	if err != nil {
		t.Fatal(err)
	}
	want := Limits{Indexes: []string{"alice/dev"}, Allowed: []string{"pkg_read"}, Projects: []string{"foo-bar"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Intersect = %+v", got)
	}
	if got, err := (Limits{}).Intersect(config); err != nil || !reflect.DeepEqual(got, config) {
		t.Errorf("no limits narrowed by the config = %+v, %v", got, err)
	}
	_, err = config.Intersect(Limits{Allowed: []string{"del_entry", "upload"}})
	var oe *OutsideError
	if !errors.As(err, &oe) || oe.Key != KeyAllowed || err.Error() != "allowed del_entry,upload: outside what is allowed (pkg_read)" {
		t.Errorf("widening: %v", err)
	}
}
