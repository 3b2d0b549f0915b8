package config

import (
	"fmt"
	"slices"
	"strings"
)

// How a publisher's claims are compared with a token's: the one definition
// the exchange matches tokens with (Mismatches) and the load-time check of
// publishers that one token could match (overlap) reasons with.

// Issuers of the two CI systems whose claims this file knows.
const (
	GitHubIssuer = "https://token.actions.githubusercontent.com"
	GitLabIssuer = "https://gitlab.com"
)

// Providers, the presets a publisher may name.
const (
	ProviderGitHub = "github"
	ProviderGitLab = "gitlab"
)

// ClaimEventName is GitHub's event that started the workflow; every
// GitHub publisher checks it (see refusedEvents), named in its claims or
// not.
const ClaimEventName = "event_name"

// ClaimEnvironment is the claim that makes a publisher win over one
// without it (PyPI's rule).
const ClaimEnvironment = "environment"

// refusedEvents are GitHub events a publisher refuses unless allow_events
// names them: pull_request_target runs with the base repository's
// identity for a pull request from anyone's fork (PyPI refuses it), and
// workflow_run runs after another workflow, which may have been a fork's
// (crates.io refuses both).
var refusedEvents = []string{"pull_request_target", "workflow_run"}

// foldedClaims are names GitHub and GitLab compare without case (a
// repository "Acme/App" is "acme/app"), as PyPI does; ids, refs, files and
// subjects are compared exactly.
var foldedClaims = map[string]bool{
	"repository": true, "repository_owner": true,
	"project_path": true, "namespace_path": true, "job_project_path": true, "job_namespace_path": true,
}

// kind is the CI system whose claims p's tokens carry: its preset, else
// the one whose issuer it names ("" for any other).
func (p Publisher) kind() string {
	if p.Provider != "" {
		return p.Provider
	}
	switch p.Issuer {
	case GitHubIssuer:
		return ProviderGitHub
	case GitLabIssuer:
		return ProviderGitLab
	}
	return ""
}

// foldCase reports whether claim is compared without case for p: names
// always; an environment on GitHub, whose environments are named without
// case, but not on GitLab, where "Release" and "release" are two (and
// with protections of their own), nor on an issuer we do not know.
func (p Publisher) foldCase(claim string) bool {
	return foldedClaims[claim] || (claim == ClaimEnvironment && p.kind() == ProviderGitHub)
}

// ClaimMatches reports whether a token whose claim is got passes p's
// claims[claim]: equal (without case where foldCase says so), or, for a
// value with a trailing '*', beginning with the rest. A missing claim (got
// "") never matches.
func (p Publisher) ClaimMatches(claim, got string) bool {
	want := p.Claims[claim]
	if got == "" || want == "" {
		return false
	}
	if p.foldCase(claim) {
		want, got = lowerASCII(want), lowerASCII(got)
	}
	if prefix, ok := strings.CutSuffix(want, "*"); ok {
		return strings.HasPrefix(got, prefix)
	}
	return got == want
}

// Mismatches are the claims of a token (claims) that p refuses, sorted:
// each of p's claims that does not match, and ClaimEventName when p is a
// GitHub publisher and the token's event is missing or one it refuses.
// None: p matches.
func (p Publisher) Mismatches(claims map[string]string) []string {
	var out []string
	for _, k := range p.ClaimNames() {
		if !p.ClaimMatches(k, claims[k]) {
			out = append(out, k)
		}
	}
	if p.kind() == ProviderGitHub && !p.EventAllowed(claims[ClaimEventName]) && !slices.Contains(out, ClaimEventName) {
		out = append(out, ClaimEventName)
		slices.Sort(out)
	}
	return out
}

// EventAllowed reports whether a GitHub publisher takes tokens of event:
// GitHub always says which (PyPI requires it too), and two are refused
// unless allow_events names them.
func (p Publisher) EventAllowed(event string) bool {
	if event == "" {
		return false
	}
	return !slices.Contains(refusedEvents, event) || slices.Contains(p.AllowEvents, event)
}

// NamesEnvironment reports whether p is limited to one environment, which
// makes it win over a publisher that is not when both match.
func (p Publisher) NamesEnvironment() bool {
	_, ok := p.Claims[ClaimEnvironment]
	return ok
}

// lowerASCII folds A-Z only: the names GitHub and GitLab allow are ASCII,
// and Unicode folding would let "\u212a" (the Kelvin sign) be a "k".
func lowerASCII(s string) string {
	return strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + ('a' - 'A')
		}
		return r
	}, s)
}

// couldMatchOne reports whether one token could match both a and b, and
// neither wins by PyPI's rule: the same issuer, an environment in both or
// neither, and no claim that both name with values no token value could
// equal at once. Decided without tokens, so it errs on "could": claims of
// other names (repository and repository_id) are taken as able to agree.
func couldMatchOne(a, b Publisher) bool {
	if a.Issuer != b.Issuer || a.NamesEnvironment() != b.NamesEnvironment() {
		return false
	}
	for k, va := range a.Claims {
		vb, ok := b.Claims[k]
		if !ok {
			continue
		}
		if a.foldCase(k) || b.foldCase(k) {
			va, vb = lowerASCII(va), lowerASCII(vb)
		}
		if !compatible(va, vb) {
			return false
		}
	}
	return true
}

// compatible reports whether some value matches both x and y (each exact,
// or a prefix with a trailing '*').
func compatible(x, y string) bool {
	px, xPrefix := strings.CutSuffix(x, "*")
	py, yPrefix := strings.CutSuffix(y, "*")
	switch {
	case xPrefix && yPrefix:
		return strings.HasPrefix(px, py) || strings.HasPrefix(py, px)
	case xPrefix:
		return strings.HasPrefix(y, px)
	case yPrefix:
		return strings.HasPrefix(x, py)
	}
	return x == y
}

// sameScope reports whether a and b give the same token and spend alike:
// then it does not matter which of them a token matches.
func sameScope(a, b Publisher) bool {
	return a.Server == b.Server && a.Budget == b.Budget && a.AnyProject == b.AnyProject &&
		slices.Equal(a.Limits.Allowed, b.Limits.Allowed) && slices.Equal(a.Limits.Indexes, b.Limits.Indexes) &&
		slices.Equal(a.Limits.Projects, b.Limits.Projects)
}

// checkOverlaps refuses two publishers that one token could match with
// different scopes: which one it got would depend on their order in the
// file.
func checkOverlaps(ps []Publisher) error {
	for i, a := range ps {
		for _, b := range ps[i+1:] {
			if couldMatchOne(a, b) && !sameScope(a, b) {
				return fmt.Errorf("exchange.publishers %s and %s could both match one identity token, with different scopes: "+
					"give a claim both name values no token has at once, name an environment in only one, or give them the same scope", a.Name, b.Name)
			}
		}
	}
	return nil
}
