package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/devpi-credd/devpi-credd/config"
	"github.com/devpi-credd/devpi-credd/exchange"
	"github.com/devpi-credd/devpi-credd/internal/safeurl"
	"github.com/devpi-credd/devpi-credd/job"
	"github.com/devpi-credd/devpi-credd/token"
)

// checkOIDC refuses flag combinations that leave two answers to where the
// job's token comes from.
func (o jobOptions) checkOIDC() error {
	switch {
	case !o.oidc && (o.exchange != "" || o.audience != "" || o.idTokenFile != "" || o.idTokenCommand != ""):
		return usageErrorf("--exchange, --audience, --id-token-file and --id-token-command go with --oidc")
	case o.idTokenFile != "" && o.idTokenCommand != "":
		return usageErrorf("give --id-token-file or --id-token-command, not both")
	case o.oidc && o.tokenFile != "":
		return usageErrorf("give --oidc or --token-file, not both")
	}
	return nil
}

// exchangeBase is the exchange's URL: --exchange, else the server's
// scheme and host (PyPI's paths are at the host's root).
func (o jobOptions) exchangeBase(srv config.Server) (*url.URL, error) {
	base := &url.URL{Scheme: srv.URL.Scheme, Host: srv.URL.Host}
	if o.exchange != "" {
		u, err := url.Parse(o.exchange)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
			return nil, usageErrorf("--exchange %s: an http(s) URL without user info", safeurl.Redact(o.exchange))
		}
		base = &url.URL{Scheme: u.Scheme, Host: u.Host}
	}
	if err := exchange.CheckBase(base); err != nil {
		return nil, &exitError{exitUsage, fmt.Errorf("--oidc: %w", err)}
	}
	return base, nil
}

// exchangeSpec is the job of a trusted publisher: the job's identity
// token traded at the exchange for its root token, which expires in
// minutes and is the job's deadline at the latest.
func (a *app) exchangeSpec(ctx context.Context, o jobOptions, srv config.Server) (job.Spec, error) {
	base, err := o.exchangeBase(srv)
	if err != nil {
		return job.Spec{}, err
	}
	aud, err := exchange.ResolveAudience(base, o.audience)
	if err != nil {
		return job.Spec{}, &exitError{exitUsage, fmt.Errorf("--oidc: %w", err)}
	}
	c := &exchange.Client{Base: base, HTTP: &http.Client{Timeout: 30 * time.Second}, Getenv: a.getenv, Stderr: a.stderr}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	jwt, source, err := c.IDToken(ctx, exchange.IDTokenRequest{Audience: aud, File: o.idTokenFile, Command: o.idTokenCommand})
	switch {
	case errors.Is(err, exchange.ErrNoIdentity) || errors.Is(err, exchange.ErrAudience):
		return job.Spec{}, &exitError{exitUsage, fmt.Errorf("--oidc: %w", err)}
	case errors.Is(err, exchange.ErrBadIDToken):
		return job.Spec{}, &exitError{exitUsage, err}
	case errors.Is(err, exchange.ErrIDTokenCommand):
		return job.Spec{}, &exitError{exitFailed, err}
	case err != nil:
		return job.Spec{}, &exitError{exitUnreachable, err}
	}
	m, err := c.Exchange(ctx, jwt)
	if err != nil {
		var rf *exchange.Refusal
		if errors.As(err, &rf) {
			return job.Spec{}, &exitError{exitFailed, err}
		}
		return job.Spec{}, &exitError{exitUnreachable, err}
	}
	root, err := token.Parse(m.Token)
	if err != nil {
		return job.Spec{}, errors.New("the exchange answered with something that is not a devpi token")
	}
	ttl := o.ttl
	if until := time.Unix(m.Expires, 0).Sub(a.now()); until < ttl {
		ttl = until
	}
	if ttl < time.Second {
		return job.Spec{}, errors.New("the exchange's token has expired already: are this machine's and the exchange's clocks right?")
	}
	a.infof("devpi-credd: traded the identity token from %s at %s for a token of %s, until %s", source, base, root.User(), time.Unix(m.Expires, 0).Local().Format(localTime))
	return job.Spec{Server: srv, Root: root, TTL: ttl, SecretEnv: exchange.IDTokenVars(aud)}, nil
}
