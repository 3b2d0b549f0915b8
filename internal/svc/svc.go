// Package svc runs devpi-credd serve as a service, through
// kardianos/service: a systemd user unit on Linux (always systemd, whatever
// the library detects: in a container it would pick SysV), a launchd agent
// on macOS, a Windows service; and it answers the Windows service control
// manager when that starts the daemon. The command line keeps the flags,
// help and messages.
package svc

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/kardianos/service"

	"github.com/devpi-credd/devpi-credd/internal/safefile"
)

// Name is the service's name everywhere.
const Name = "devpi-credd"

// Options say what to install.
type Options struct {
	// Executable is devpi-credd as it stays installed; Config the config's
	// absolute path, passed to serve.
	Executable string
	Config     string
	// System installs a system-wide service (that still runs as this
	// user), instead of the user's.
	System bool
}

// Errors of Install, Uninstall and Control.
var (
	ErrInstalled    = errors.New("already installed")
	ErrNotInstalled = errors.New("not installed")
)

// UnreachableError: the unit was written (or removed), but the service
// manager cannot be reached to enable (or disable) it; Reason is why.
type UnreachableError struct{ Reason string }

func (e *UnreachableError) Error() string {
	return "the service manager cannot be reached (" + e.Reason + ")"
}

// Manager installs and controls the service.
type Manager struct {
	o    Options
	s    service.Service
	unit string
}

// New prepares a Manager; it changes nothing yet.
func New(o Options) (*Manager, error) {
	args := []string{"serve", "--config", o.Config}
	c := &service.Config{
		Name:        Name,
		DisplayName: "devpi-credd",
		Description: "short-lived devpi tokens for pip, uv, twine and devpi-client",
		Executable:  o.Executable,
		Arguments:   escapeArgs(args),
		Option: service.KeyValue{
			"UserService":   !o.System,
			"SystemdScript": unitTemplate(o.System),
			"RunAtLoad":     true,
			"KeepAlive":     true,
		},
	}
	if o.System {
		// A system-wide service still runs as this user, with this user's
		// config, token store and socket: not as root.
		if u, err := user.Current(); err == nil && u.Uid != "0" {
			c.UserName = u.Username
		}
	}
	s, err := newService(c)
	if err != nil {
		return nil, err
	}
	// Where the library will write: it asks os.UserHomeDir ($HOME) itself.
	home, err := os.UserHomeDir()
	if err != nil && !o.System {
		return nil, err
	}
	return &Manager{o: o, s: s, unit: unitPath(o, home)}, nil
}

// Unit is where the service's definition lives (or, on Windows, its
// name), for messages.
func (m *Manager) Unit() string { return m.unit }

// Installed reports whether the service is installed.
func (m *Manager) Installed() bool {
	if runtime.GOOS == "windows" {
		_, err := m.s.Status()
		return !errors.Is(err, service.ErrNotInstalled)
	}
	_, err := os.Stat(m.unit)
	return err == nil
}

// Install installs the service. On Linux without a reachable user manager
// the unit is still written, and the error is an *UnreachableError.
func (m *Manager) Install() error {
	if m.Installed() {
		return ErrInstalled
	}
	if err := prepareUnitDir(m.unit); err != nil {
		return err
	}
	// The socket first: the service unit requires it.
	sock := socketPath(m.o, m.unit)
	if sock != "" {
		if err := safefile.Write(sock, []byte(socketUnit), 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", sock, err)
		}
	}
	err := m.s.Install()
	if ferr := fixUnitMode(m.unit); ferr != nil && err == nil {
		err = ferr
	}
	if sock != "" && err == nil {
		// The library enables the service; the socket is ours to enable.
		if serr := systemctl("enable", Name+".socket"); serr != nil {
			err = serr
		}
	}
	if err != nil && runtime.GOOS == "linux" && m.Installed() {
		return &UnreachableError{oneLine(err)}
	}
	return err
}

// Uninstall stops and removes the service. On Linux without a reachable
// user manager the unit is still removed, and the error is an
// *UnreachableError.
func (m *Manager) Uninstall() error {
	if !m.Installed() {
		return ErrNotInstalled
	}
	_ = m.s.Stop()
	if sock := socketPath(m.o, m.unit); sock != "" {
		_ = systemctl("disable", "--now", Name+".socket")
		if err := os.Remove(sock); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	err := m.s.Uninstall()
	if err != nil && runtime.GOOS == "linux" && m.Installed() {
		if rerr := os.Remove(m.unit); rerr != nil {
			return rerr
		}
		return &UnreachableError{oneLine(err)}
	}
	return err
}

// State says whether the installed service runs, in words.
func (m *Manager) State() string {
	if runtime.GOOS == "linux" && !m.o.System {
		// kardianos/service 1.3 asks the system manager even for a user
		// unit: ask the user's manager.
		return userUnitState()
	}
	st, err := m.s.Status()
	state := map[service.Status]string{service.StatusRunning: "running", service.StatusStopped: "stopped"}[st]
	if err != nil || state == "" {
		state = "state unknown"
		if err != nil {
			state += " (" + oneLine(err) + ")"
		}
	}
	return state
}

// Control starts, stops or restarts the installed service.
func (m *Manager) Control(action string) error {
	if !m.Installed() {
		return ErrNotInstalled
	}
	if err := service.Control(m.s, action); err != nil {
		return errors.New(oneLine(err))
	}
	return nil
}

func oneLine(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }

// prepareUnitDir creates the unit's directory, each missing level 0755
// whatever the umask: kardianos/service would create it with os.ModePerm,
// which under umask 000 lets anyone put a unit there that runs as this
// user.
func prepareUnitDir(unit string) error {
	if runtime.GOOS == "windows" || !filepath.IsAbs(unit) {
		return nil
	}
	var missing []string
	for d := filepath.Dir(unit); ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil || filepath.Dir(d) == d {
			break
		}
		missing = append([]string{d}, missing...)
	}
	for _, d := range missing {
		if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("creating %s: %w", d, err)
		}
		if err := os.Chmod(d, 0o755); err != nil {
			return fmt.Errorf("securing %s: %w", d, err)
		}
	}
	return nil
}

// fixUnitMode makes the unit (or launchd plist) 0644: the library writes
// the plist with os.Create, which under umask 000 is writable by anyone.
func fixUnitMode(unit string) error {
	if runtime.GOOS == "windows" || !filepath.IsAbs(unit) {
		return nil
	}
	if err := os.Chmod(unit, 0o644); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("securing %s: %w", unit, err)
	}
	return nil
}

// program is what kardianos/service starts and stops. For install and the
// other actions it does nothing; under the Windows service control manager,
// which talks to the process, it runs the daemon (see RunManaged).
type program struct {
	run    func(ctx context.Context) error
	cancel context.CancelFunc
	done   chan error
}

func (p *program) Start(service.Service) error {
	if p.run == nil {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel, p.done = cancel, make(chan error, 1)
	go func() { p.done <- p.run(ctx) }()
	return nil
}

func (p *program) Stop(service.Service) error {
	if p.cancel == nil {
		return nil
	}
	p.cancel()
	return <-p.done
}

// RunManaged runs the daemon under a service manager that expects the
// process to answer it (Windows); elsewhere a service is a plain process,
// and it returns false at once.
func RunManaged(run func(ctx context.Context) error) (bool, error) {
	if runtime.GOOS != "windows" || service.Interactive() {
		return false, nil
	}
	s, err := service.New(&program{run: run}, &service.Config{Name: Name})
	if err != nil {
		return true, err
	}
	return true, s.Run()
}
