package daemon

import (
	"crypto/tls"
	"fmt"
	"net"

	"github.com/devpi-credd/devpi-credd/config"
	"github.com/devpi-credd/devpi-credd/exchange"
	"github.com/devpi-credd/devpi-credd/internal/safefile"
)

// Check makes the checks of cfg that serve makes when it starts, beyond
// those of loading it: the exchange's listen address, its certificate and
// key (the key as private as a token file, and this user's), and its
// replay directory. New runs it, so that serve refuses to start on what it
// finds; 'devpi-credd config check' runs it too, without starting
// anything. It makes nothing: the sockets and the audit log are checked
// only when serve opens them (that makes them), and a replay_dir that
// does not exist yet, in parents that pass, is a note (serve makes it).
func Check(cfg *config.Config) (notes []string, err error) {
	notes, err = checkExchange(cfg.Exchange)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Path, err)
	}
	return notes, nil
}

func checkExchange(e *config.Exchange) ([]string, error) {
	if e == nil {
		return nil, nil
	}
	if _, err := net.ResolveTCPAddr("tcp", e.Listen); err != nil {
		return nil, fmt.Errorf("exchange.listen = %q: %w", e.Listen, err)
	}
	if _, err := exchangeTLS(e); err != nil {
		return nil, err
	}
	if e.ReplayDir != "" {
		exists, err := exchange.CheckDirReplay(e.ReplayDir)
		if err != nil {
			return nil, fmt.Errorf("the exchange: %w", err)
		}
		if !exists {
			return []string{fmt.Sprintf("replay_dir %s does not exist yet: serve makes it (0700)", e.ReplayDir)}, nil
		}
	}
	return nil, nil
}

// maxPEM bounds a certificate chain or key file.
const maxPEM = 1 << 20

// exchangeTLS is the exchange's TLS config, nil for plain http: the
// certificate chain (public) and its key, which must be private to this
// user as a token file is (whoever reads it can be the exchange).
func exchangeTLS(e *config.Exchange) (*tls.Config, error) {
	if e.TLSCert == "" {
		return nil, nil
	}
	chain, _, err := safefile.Read(e.TLSCert, maxPEM)
	if err != nil {
		return nil, fmt.Errorf("the exchange's tls_cert: %w", err)
	}
	key, err := safefile.ReadOwnPrivate(e.TLSKey, maxPEM)
	if err != nil {
		return nil, fmt.Errorf("the exchange's tls_key: %w", err)
	}
	cert, err := tls.X509KeyPair(chain, key)
	if err != nil {
		return nil, fmt.Errorf("the exchange's certificate and key: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}
