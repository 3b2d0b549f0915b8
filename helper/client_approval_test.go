//go:build unix

package helper

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/devpi-credd/devpi-credd/localapi"
)

// recordingDaemon answers every request with answer, and keeps each
// request's method, path and body.
func recordingDaemon(t *testing.T, answer any) (*Client, <-chan string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "s")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	seen := make(chan string, 4)
	go func() {
		_ = http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			seen <- r.Method + " " + r.URL.Path + " " + string(b)
			_ = json.NewEncoder(w).Encode(answer)
		}))
	}()
	return &Client{Socket: sock}, seen
}

func TestClientApprovalAndUnlockRequests(t *testing.T) {
	ctx := context.Background()
	c, seen := recordingDaemon(t, localapi.ApprovalEnrollment{ID: "e1", URI: "otpauth://totp/x", Expires: 9})
	e, err := c.ApprovalBegin(ctx, localapi.ApprovalBegin{Code: "123456", Account: "alice@host"})
	if err != nil || e.ID != "e1" || e.URI != "otpauth://totp/x" || e.Expires != 9 {
		t.Fatalf("%+v %v", e, err)
	}
	if got := <-seen; got != `POST /v1/approval/begin {"code":"123456","account":"alice@host"}` {
		t.Errorf("begin: %s", got)
	}
	c, seen = recordingDaemon(t, localapi.Status{PID: 7, Sealed: true, Opened: true})
	calls := []struct {
		call func() (*localapi.Status, error)
		want string
	}{
		{func() (*localapi.Status, error) {
			return c.ApprovalConfirm(ctx, localapi.ApprovalConfirm{ID: "e1", Code: "654321", Passphrase: "pass"})
		}, `POST /v1/approval/confirm {"id":"e1","code":"654321","passphrase":"pass"}`},
		{func() (*localapi.Status, error) { return c.ApprovalOff(ctx, localapi.ApprovalOff{Code: "111111"}) },
			`POST /v1/approval/off {"code":"111111"}`},
		{func() (*localapi.Status, error) { return c.Unlock(ctx, "correct horse") }, `POST /v1/unlock {"passphrase":"correct horse"}`},
		// A daemon without a sealed store gets the body it always got.
		{func() (*localapi.Status, error) { return c.Unlock(ctx, "") }, `POST /v1/unlock {}`},
		{func() (*localapi.Status, error) { return c.Lock(ctx) }, `POST /v1/lock {}`},
	}
	for _, tt := range calls {
		st, err := tt.call()
		if err != nil || st.PID != 7 || !st.Sealed || !st.Opened {
			t.Errorf("%s: %+v %v", tt.want, st, err)
		}
		if got := <-seen; got != tt.want {
			t.Errorf("sent %s, want %s", got, tt.want)
		}
	}
}
