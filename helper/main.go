package helper

import (
	"context"
	"errors"
	"io"
	"strconv"
	"time"

	"github.com/devpi-credd/devpi-credd/internal/clientcfg"
	"github.com/devpi-credd/devpi-credd/internal/xdg"
)

// NewClient is the client of the daemon the config at configPath names
// (see clientcfg), trusting TrustedUIDs besides this user and root. Where
// that socket is not there, it is the system daemon's (system mode), if
// that one's is; $DEVPI_CREDD_SOCKET is always taken as given. err, when
// set, says why the config did not say where the daemon is (the default
// socket is used); the client works all the same.
func NewClient(configPath string, getenv func(string) string) (*Client, *clientcfg.Config, error) {
	return newClient(configPath, getenv, theSystemDaemon())
}

func newClient(configPath string, getenv func(string) string, system systemDaemon) (*Client, *clientcfg.Config, error) {
	cfg, err := clientcfg.Load(configPath, getenv)
	c := &Client{Socket: cfg.Socket}
	c.TrustUIDs, _ = TrustedUIDs(getenv)
	if getenv("DEVPI_CREDD_SOCKET") == "" {
		system.use(c)
	}
	return c, cfg, err
}

// TrustedUIDs is $DEVPI_CREDD_DAEMON_UID: another user whose daemon may
// answer (one that serves this uid through allow_uids). err says why a
// value that is not a uid is ignored.
func TrustedUIDs(getenv func(string) string) ([]int, error) {
	v := getenv("DEVPI_CREDD_DAEMON_UID")
	if v == "" {
		return nil, nil
	}
	if uid, err := strconv.Atoi(v); err == nil && uid >= 0 {
		return []int{uid}, nil
	}
	return nil, errors.New("DEVPI_CREDD_DAEMON_UID=" + strconv.Quote(v) + " is not a uid; ignored")
}

// configSource is the daemon's client, which can also tell from the
// config, when the daemon is down, whether a service is ours.
type configSource struct {
	*Client
	cfg    *clientcfg.Config
	cfgErr error
}

// Matches: without a config that could be read (or with none: the daemon
// may be a job's, whose config is in its memory), the service may be ours,
// and the reason for no answer is worth a line.
func (s configSource) Matches(service string) bool {
	return s.cfgErr != nil || !s.cfg.Found || s.cfg.Serves(service)
}

// KeyringMain is the keyring command line that pip, uv and pdm run: the
// lean devpi-credd-keyring binary's whole program, and devpi-credd's when
// it is started as "keyring". It gives up on each call to the daemon
// after 15 s; when the daemon wants a one-time code, the person has
// CodeWait to type it on the terminal, not counted in those 15 s.
func KeyringMain(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	c, cfg, err := NewClient(xdg.ConfigFile(getenv), getenv)
	ap := Approver{CallTimeout: keyringCallTimeout}
	return Keyring(context.Background(), args, stdout, stderr, configSource{Client: c, cfg: cfg, cfgErr: err}, ap)
}

// keyringCallTimeout bounds one call of the keyring helper to the daemon.
const keyringCallTimeout = 15 * time.Second
