package exchange

import (
	"fmt"
	"strings"

	"github.com/devpi-credd/devpi-credd/config"
)

// match finds the publisher of the token's issuer whose claims all match
// (config.Publisher.Mismatches: the one comparison, which the config's
// load-time check of overlapping publishers shares). Of several, the
// first that names an environment wins over those that do not (PyPI's
// rule); the config refuses at load any other pair that one token could
// match with different scopes, so that the order of the file never
// decides.
//
// A refusal tells the caller only that none matched, as PyPI's does:
// which claims failed, against which publisher, would let anyone with a
// token of the issuer probe what is trusted (their ref, environment,
// workflow file). Its Detail, for the audit log, says.
func match(publishers []config.Publisher, id *Identity) (config.Publisher, *Refusal) {
	var misses []string
	var general *config.Publisher
	for i, p := range publishers {
		if p.Issuer != id.Issuer {
			continue
		}
		bad := p.Mismatches(id.Claims)
		switch {
		case len(bad) == 0 && p.NamesEnvironment():
			return p, nil
		case len(bad) == 0:
			if general == nil {
				general = &publishers[i]
			}
			continue
		}
		var these []string
		for _, k := range bad {
			these = append(these, describeMismatch(p, k, id.Claims[k]))
		}
		misses = append(misses, p.Name+": "+strings.Join(these, ", "))
	}
	if general != nil {
		return *general, nil
	}
	rf := refusal(422, CodeInvalidPublisher, "valid token, but no publisher of this issuer matches its claims")
	rf.Detail = "claims that did not match: " + strings.Join(misses, "; ")
	return config.Publisher{}, rf
}

// describeMismatch is one claim that failed, for the audit log.
func describeMismatch(p config.Publisher, claim, got string) string {
	s := fmt.Sprintf("%s %q", claim, clip(got))
	if claim == config.ClaimEventName && !p.EventAllowed(got) {
		if got == "" {
			s += " (a GitHub token always names its event)"
		} else {
			s += " (refused unless the publisher's allow_events names it)"
		}
	}
	return s
}
