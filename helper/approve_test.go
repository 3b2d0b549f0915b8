package helper

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devpi-credd/devpi-credd/localapi"
)

// fakeTTY is a terminal: what the person types comes from in, what is
// written to it is kept.
type fakeTTY struct {
	in     io.Reader
	mu     sync.Mutex
	out    bytes.Buffer
	closed bool
	onRead func() // runs before the first read: the person thinking
}

func (t *fakeTTY) Read(p []byte) (int, error) {
	if f := t.onRead; f != nil {
		t.onRead = nil
		f()
	}
	return t.in.Read(p)
}

func (t *fakeTTY) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.out.Write(p)
}

func (t *fakeTTY) Close() error {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	if c, ok := t.in.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

func (t *fakeTTY) written() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.out.String()
}

func (t *fakeTTY) approver() Approver {
	return Approver{Terminal: func() (io.ReadWriteCloser, error) { return t, nil }}
}

// approvingSource is a daemon with approval on: an upload (a URL without
// +simple) needs the code 123456; 654321 is spent.
type approvingSource struct {
	mu   sync.Mutex
	got  []localapi.CredentialsRequest
	ctxs []context.Context
}

const goodCode = "123456"

func (f *approvingSource) Credentials(ctx context.Context, req localapi.CredentialsRequest) (*localapi.Credentials, error) {
	f.mu.Lock()
	f.got = append(f.got, req)
	f.ctxs = append(f.ctxs, ctx)
	f.mu.Unlock()
	switch {
	case strings.Contains(req.URL, "+simple"):
	case req.Code == "":
		return nil, &APIError{Status: 401, Code: localapi.CodeApprovalRequired, Msg: "an upload token needs a one-time code"}
	case req.Code != goodCode:
		return nil, &APIError{Status: 403, Code: localapi.CodeApprovalRefused, Msg: "the one-time code is wrong"}
	}
	return &localapi.Credentials{Username: "alice", Password: "devpi-TOKEN", Expires: 1800000000}, nil
}

func (f *approvingSource) requests() []localapi.CredentialsRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]localapi.CredentialsRequest(nil), f.got...)
}

const uploadURL = "https://u:Pw@devpi.example/alice/dev/"

func TestApproverPromptsOnceAndAsksWithTheCode(t *testing.T) {
	tty := &fakeTTY{in: strings.NewReader("123 456\n")}
	src := &approvingSource{}
	c, err := tty.approver().Credentials(context.Background(), src, localapi.CredentialsRequest{URL: uploadURL})
	if err != nil || c.Password != "devpi-TOKEN" {
		t.Fatalf("%+v, %v", c, err)
	}
	got := src.requests()
	if len(got) != 2 || got[0].Code != "" || got[1].Code != goodCode || got[1].URL != uploadURL {
		t.Fatalf("requests %+v", got)
	}
	if w := tty.written(); w != "devpi-credd: approve the upload to https://devpi.example/alice/dev/: one-time code: " {
		t.Errorf("the terminal shows %q", w)
	}
	if !tty.closed {
		t.Error("the terminal was left open")
	}
}

// A read needs no code: nobody is asked, the terminal is not even opened.
func TestApproverReadsNeverPrompt(t *testing.T) {
	src := &approvingSource{}
	ap := Approver{Terminal: func() (io.ReadWriteCloser, error) { t.Fatal("the terminal was opened"); return nil, nil }}
	if _, err := ap.Credentials(context.Background(), src, localapi.CredentialsRequest{URL: "https://devpi.example/alice/dev/+simple/"}); err != nil {
		t.Fatal(err)
	}
	if len(src.requests()) != 1 {
		t.Errorf("requests %+v", src.requests())
	}
}

func TestApproverWithoutTerminal(t *testing.T) {
	src := &approvingSource{}
	_, err := noTerminal.Credentials(context.Background(), src, localapi.CredentialsRequest{URL: uploadURL})
	var nt *NoTerminalError
	if !errors.As(err, &nt) || !errors.Is(err, ErrNoTerminal) {
		t.Fatalf("%v", err)
	}
	want := "an upload to https://devpi.example/alice/dev/ needs a one-time code and there is no terminal to ask on: run the upload under 'devpi-credd exec --approve -- ...' or use 'devpi-credd get --code-stdin https://devpi.example/alice/dev/'"
	if err.Error() != want {
		t.Errorf("%q\nwant %q", err, want)
	}
	if len(src.requests()) != 1 {
		t.Errorf("requests %+v", src.requests())
	}
}

// A refused code is told on the terminal and returned; nobody is asked a
// second time, and the code is in no message.
func TestApproverRefusedCodeIsNotAskedAgain(t *testing.T) {
	tty := &fakeTTY{in: strings.NewReader("999888\n777666\n")}
	src := &approvingSource{}
	_, err := tty.approver().Credentials(context.Background(), src, localapi.CredentialsRequest{URL: uploadURL})
	if !IsCode(err, localapi.CodeApprovalRefused) {
		t.Fatalf("%v", err)
	}
	if got := src.requests(); len(got) != 2 || got[1].Code != "999888" {
		t.Fatalf("requests %+v", got)
	}
	w := tty.written()
	if w != "devpi-credd: approve the upload to https://devpi.example/alice/dev/: one-time code: devpi-credd: the one-time code is wrong\n" {
		t.Errorf("the terminal shows %q", w)
	}
	if strings.Contains(err.Error(), "999888") || strings.Contains(w, "999888") {
		t.Errorf("the code was repeated: %q / %q", err, w)
	}
}

func TestApproverNoCode(t *testing.T) {
	for name, in := range map[string]io.Reader{"empty line": strings.NewReader(" \n"), "end of input": strings.NewReader("")} {
		t.Run(name, func(t *testing.T) {
			tty := &fakeTTY{in: in}
			src := &approvingSource{}
			_, err := tty.approver().Credentials(context.Background(), src, localapi.CredentialsRequest{URL: uploadURL})
			if !errors.Is(err, ErrNoCode) || len(src.requests()) != 1 {
				t.Fatalf("%v, requests %+v", err, src.requests())
			}
			if want := "the upload to https://devpi.example/alice/dev/ is not approved: no one-time code given"; err.Error() != want {
				t.Errorf("%q, want %q", err, want)
			}
		})
	}
}

// Nobody answers: the prompt ends after Wait, the terminal is closed (so
// the read ends too), and the daemon is not asked again.
func TestApproverWaitEnds(t *testing.T) {
	r, _ := io.Pipe()
	tty := &fakeTTY{in: r}
	src := &approvingSource{}
	ap := tty.approver()
	ap.Wait = 20 * time.Millisecond
	_, err := ap.Credentials(context.Background(), src, localapi.CredentialsRequest{URL: uploadURL})
	if !errors.Is(err, ErrNoCode) || !strings.Contains(err.Error(), "within 20ms") {
		t.Fatalf("%v", err)
	}
	if len(src.requests()) != 1 || !tty.closed {
		t.Errorf("requests %+v, closed %v", src.requests(), tty.closed)
	}
}

// CallTimeout bounds each call to the daemon, not the person's typing:
// the call after a prompt longer than CallTimeout gets its own time.
func TestApproverCallTimeoutSparesThePrompt(t *testing.T) {
	const callTimeout = 20 * time.Millisecond
	tty := &fakeTTY{in: strings.NewReader(goodCode + "\n"), onRead: func() { <-time.After(3 * callTimeout) }}
	src := &approvingSource{}
	ap := tty.approver()
	ap.CallTimeout = callTimeout
	start := time.Now()
	if _, err := ap.Credentials(context.Background(), src, localapi.CredentialsRequest{URL: uploadURL}); err != nil {
		t.Fatal(err)
	}
	if len(src.ctxs) != 2 {
		t.Fatalf("%d calls", len(src.ctxs))
	}
	for i, ctx := range src.ctxs {
		d, ok := ctx.Deadline()
		if !ok {
			t.Errorf("call %d has no deadline", i)
		}
		if i == 1 && d.Sub(start) < 3*callTimeout {
			t.Errorf("the call after the prompt had its deadline %s after the start: the prompt ate its time", d.Sub(start))
		}
	}
}

func TestAskCode(t *testing.T) {
	tty := &fakeTTY{in: strings.NewReader("\t12 34 56 \r\n")}
	code, err := tty.approver().AskCode(context.Background(), "code? ")
	if err != nil || code != "123456" || tty.written() != "code? " || !tty.closed {
		t.Fatalf("%q %v, wrote %q", code, err, tty.written())
	}
	// Nothing past the line is taken: the next prompt reads the next line.
	tty = &fakeTTY{in: strings.NewReader("111111\n222222\n")}
	for _, want := range []string{"111111", "222222"} {
		if code, err := tty.approver().AskCode(context.Background(), "code? "); code != want || err != nil {
			t.Errorf("%q %v, want %s", code, err, want)
		}
	}
	if _, err := noTerminal.AskCode(context.Background(), "code? "); !errors.Is(err, ErrNoTerminal) {
		t.Errorf("no terminal: %v", err)
	}
}

// The keyring helper with approval: a prompt on the terminal, the token
// on stdout; without a terminal, one line saying what to run, exit 1.
func TestKeyringApproval(t *testing.T) {
	args := []string{"--mode=creds", "--output=json", "get", uploadURL}
	tty := &fakeTTY{in: strings.NewReader(goodCode + "\n")}
	var out, errb bytes.Buffer
	if code := Keyring(context.Background(), args, &out, &errb, &approvingSource{}, tty.approver()); code != 0 || errb.Len() != 0 ||
		out.String() != `{"expires":1800000000,"password":"devpi-TOKEN","username":"alice"}`+"\n" {
		t.Errorf("with a code: exit %d, %q %q", code, out.String(), errb.String())
	}
	out.Reset()
	code := Keyring(context.Background(), args, &out, &errb, &approvingSource{}, noTerminal)
	want := "devpi-credd: an upload to https://devpi.example/alice/dev/ needs a one-time code and there is no terminal to ask on: run the upload under 'devpi-credd exec --approve -- ...' or use 'devpi-credd get --code-stdin https://devpi.example/alice/dev/'\n"
	if code != KeyringNotFound || out.Len() != 0 || errb.String() != want {
		t.Errorf("no terminal: exit %d, %q %q", code, out.String(), errb.String())
	}
	errb.Reset()
	tty = &fakeTTY{in: strings.NewReader("000000\n")}
	code = Keyring(context.Background(), args, &out, &errb, &approvingSource{}, tty.approver())
	if code != KeyringNotFound || out.Len() != 0 || errb.String() != "devpi-credd: no credentials for https://devpi.example/alice/dev/: the one-time code is wrong\n" {
		t.Errorf("refused: exit %d, %q %q", code, out.String(), errb.String())
	}
	if !strings.HasSuffix(tty.written(), "devpi-credd: the one-time code is wrong\n") {
		t.Errorf("refused: the terminal shows %q", tty.written())
	}
}
