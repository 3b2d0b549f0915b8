//go:build e2e

package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestTokenUserMap runs packaging/nginx/devpi-credd-token-user.conf in a
// real nginx that answers with the header it would pass on: a Basic
// header for user __token__ with a devpi token as password, with or
// without the token's devpi- prefix and at every length modulo 3 (so with
// and without base64 padding), comes out as base64(":" + TOKEN); every
// other header comes out as it went in.
func TestTokenUserMap(t *testing.T) {
	echo := startEchoNginx(t)
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	ask := func(header string) string {
		t.Helper()
		req, err := http.NewRequest("GET", echo, nil)
		must(t, err)
		if header != "" {
			req.Header.Set("Authorization", header)
		}
		resp, err := http.DefaultClient.Do(req)
		must(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		must(t, err)
		if resp.StatusCode != 200 {
			t.Fatalf("%q: %s: %s", header, resp.Status, body)
		}
		return strings.TrimSuffix(strings.TrimPrefix(string(body), "<"), ">")
	}

	// Tokens as devpi-server and devpi-credd write them: a macaroon V2
	// (byte 2, then a location or an identifier field) in unpadded
	// base64url, with and without the prefix.
	rewritten, sample := 0, ""
	for n := 40; n < 46; n++ {
		for _, field := range []byte{1, 2} {
			bin := make([]byte, n)
			_, err := rand.Read(bin)
			must(t, err)
			bin[0], bin[1] = 2, field
			body := base64.RawURLEncoding.EncodeToString(bin)
			sample = body
			for _, tok := range []string{"devpi-" + body, body} {
				for _, scheme := range []string{"Basic ", "basic ", "BASIC  "} {
					in := scheme + b64("__token__:"+tok)
					out := ask(in)
					if out != "Basic "+b64(":"+tok) {
						t.Errorf("%q (token %q) became %q, want base64(\":\" + token)", in, tok, out)
					}
					if dec, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(out, "Basic ")); err != nil || string(dec) != ":"+tok {
						t.Errorf("%q decodes to %q (%v), want %q", out, dec, err, ":"+tok)
					}
					rewritten++
				}
			}
		}
	}
	if rewritten != 6*2*2*3 {
		t.Fatalf("%d headers rewritten", rewritten)
	}

	tok := "devpi-" + sample
	unchanged := []string{
		"",
		"Basic " + b64("alice:"+tok), // the token's own user
		"Basic " + b64(":"+tok),      // already without a user
		"Basic " + b64("__token__:pypi-AgEIcHlwaS5vcmc"), // PyPI's token: not ours
		"Basic " + b64("__token__:devpix"+tok),           // "devpi" not followed by "-"
		"Basic " + b64("__token__:secret"),
		"Basic " + b64("__token__x:"+tok),
		"Basic " + b64("x__token__:"+tok),
		"Bearer " + tok,
		"Basic " + b64("__token__:"+tok) + " trailing",
		"Basic " + strings.Replace(b64("__token__:"+tok), "A", "_", 1) + "!",
		"Digest " + b64("__token__:"+tok),
	}
	for _, in := range unchanged {
		if out := ask(in); out != in {
			t.Errorf("%q became %q, want it unchanged", in, out)
		}
	}
}

// startEchoNginx starts nginx with the snippet and a server that answers
// "<$devpi_credd_authorization>", and returns its URL; it stops with the
// test.
func startEchoNginx(t *testing.T) string {
	t.Helper()
	bin, err := nginxBin()
	must(t, err)
	snippet, err := filepath.Abs(filepath.Join("..", "packaging", "nginx", "devpi-credd-token-user.conf"))
	must(t, err)
	dir := t.TempDir()
	port, err := freePort()
	must(t, err)
	user := ""
	if os.Getuid() == 0 {
		user = "user root;"
	}
	conf := fmt.Sprintf(`%s
daemon off;
worker_processes 1;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log warn;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path %[2]s/body;
    proxy_temp_path %[2]s/proxy;
    fastcgi_temp_path %[2]s/fastcgi;
    uwsgi_temp_path %[2]s/uwsgi;
    scgi_temp_path %[2]s/scgi;
    include %[3]s;
    server {
        listen 127.0.0.1:%[4]d;
        location / { return 200 "<$devpi_credd_authorization>"; }
    }
}
`, user, dir, snippet, port)
	confPath := filepath.Join(dir, "nginx.conf")
	must(t, os.WriteFile(confPath, []byte(conf), 0o600))
	cmd := exec.Command(bin, "-c", confPath, "-p", dir)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = serverProcAttr()
	must(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGQUIT)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	if err := waitReady(url, exited, time.Minute); err != nil {
		bed.dumpFile(filepath.Join(dir, "error.log"))
		t.Fatal(err)
	}
	return url
}
