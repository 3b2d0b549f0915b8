package helper

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"slices"
	"syscall"
	"time"

	"github.com/devpi-credd/devpi-credd/internal/peercred"
	"github.com/devpi-credd/devpi-credd/localapi"
)

// ErrNotRunning is wrapped when nothing answers on the socket.
var ErrNotRunning = errors.New("devpi-credd daemon is not running")

// APIError is a refusal from the daemon, with its stable code.
type APIError struct {
	Status int
	Code   string
	Msg    string
}

func (e *APIError) Error() string { return e.Msg }

// IsNotFound reports whether the daemon knows no server for the URL.
func IsNotFound(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Code == localapi.CodeNotFound
}

// Client talks to the daemon. Its zero value is not usable: set Socket.
// Each call is one connection: a helper process makes one call and exits,
// so there is no pool to keep (and no transport to start up).
//
// Before it sends a byte, a client checks whom it reached: the socket's
// directory must be private and its owner's, and the daemon (asked of the
// kernel) must run as this user, root or a uid in TrustUIDs. A daemon of
// another user learns every URL asked for and could hand out anything.
type Client struct {
	Socket string
	// TrustUIDs are other users whose daemon this client may use: one that
	// serves this uid through allow_uids ($DEVPI_CREDD_DAEMON_UID).
	TrustUIDs []int
	// DialTimeout bounds connecting (default 1 s): a daemon that is not
	// running fails at once (no socket, or connection refused); a daemon
	// whose backlog is full (EAGAIN) is tried again until this passes.
	DialTimeout time.Duration
	// Timeout bounds a whole call.
	Timeout time.Duration
}

func (c *Client) call(ctx context.Context, method, path string, body, out any) error {
	var payload []byte
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		payload = b
	}
	// The host is a placeholder: the request goes to the socket.
	req, err := http.NewRequestWithContext(ctx, method, "http://devpi-credd"+path, bytes.NewReader(payload))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Close = true
	dt, to := c.DialTimeout, c.Timeout
	if dt == 0 {
		dt = time.Second
	}
	if to == 0 {
		to = 10 * time.Second
	}
	if err := checkSocketDir(c.Socket, c.trusted); err != nil {
		return err
	}
	conn, err := dial(ctx, c.Socket, dt)
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return fmt.Errorf("no permission to use the daemon's socket %s (it serves its own user)", c.Socket)
		}
		return fmt.Errorf("%w (nothing answers on %s)", ErrNotRunning, c.Socket)
	}
	defer conn.Close()
	if err := c.checkPeer(conn); err != nil {
		return err
	}
	deadline := time.Now().Add(to)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = conn.SetDeadline(deadline)
	if err := req.Write(conn); err != nil {
		return fmt.Errorf("asking the daemon on %s: %v", c.Socket, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return fmt.Errorf("asking the daemon on %s: %v", c.Socket, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("reading the daemon's answer: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e localapi.Error
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = resp.Status
		}
		return &APIError{Status: resp.StatusCode, Code: e.Code, Msg: e.Error}
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("the daemon's answer is not JSON: %v", err)
	}
	return nil
}

// dial connects to the socket. A full backlog answers EAGAIN at once (a
// busy daemon, or a flood on a shared socket): that is tried again, a few
// milliseconds apart, until timeout.
func dial(ctx context.Context, socket string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d := &net.Dialer{}
	for wait := time.Millisecond; ; wait = min(2*wait, 20*time.Millisecond) {
		conn, err := d.DialContext(ctx, "unix", socket)
		if err == nil || !errors.Is(err, syscall.EAGAIN) {
			return conn, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(wait):
		}
	}
}

// trusted: this user, root, and the users named in TrustUIDs.
func (c *Client) trusted(uid int) bool {
	return uid == os.Getuid() || uid == 0 || slices.Contains(c.TrustUIDs, uid)
}

// checkPeer asks the kernel who listens at the other end.
func (c *Client) checkPeer(conn net.Conn) error {
	cred, err := peercred.Of(conn)
	switch {
	case errors.Is(err, peercred.ErrUnsupported):
		return nil // Windows: the profile directory is the gate
	case err != nil:
		return fmt.Errorf("refusing the daemon on %s: cannot tell who runs it: %v", c.Socket, err)
	case !c.trusted(cred.UID):
		return fmt.Errorf("refusing the daemon on %s: it runs as uid %d, not as you (uid %d) or root; if you mean to use that user's daemon, set DEVPI_CREDD_DAEMON_UID=%d", c.Socket, cred.UID, os.Getuid(), cred.UID)
	}
	return nil
}

// Credentials asks for a token for req.URL.
func (c *Client) Credentials(ctx context.Context, req localapi.CredentialsRequest) (*localapi.Credentials, error) {
	var out localapi.Credentials
	if err := c.call(ctx, http.MethodPost, localapi.PathCredentials, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Status asks for the daemon's state.
func (c *Client) Status(ctx context.Context) (*localapi.Status, error) {
	var out localapi.Status
	if err := c.call(ctx, http.MethodGet, localapi.PathStatus, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Lock makes the daemon refuse every mint until Unlock.
func (c *Client) Lock(ctx context.Context) (*localapi.Status, error) {
	var out localapi.Status
	if err := c.call(ctx, http.MethodPost, localapi.PathLock, struct{}{}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Unlock lets the daemon mint again.
func (c *Client) Unlock(ctx context.Context) (*localapi.Status, error) {
	var out localapi.Status
	if err := c.call(ctx, http.MethodPost, localapi.PathUnlock, struct{}{}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
