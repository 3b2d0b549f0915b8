//go:build linux

package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/devpi-credd/devpi-credd/e2e/worm/wormapi"
	"github.com/devpi-credd/devpi-credd/token"
)

// upload posts the plan's wheel to devpi-server's upload URL as twine
// does (the legacy upload API), as user with password.
func (w *worm) upload(user, password string) wormapi.Upload {
	wheel, err := os.ReadFile(w.plan.Wheel)
	if err != nil {
		return wormapi.Upload{Err: err.Error()}
	}
	sum := sha256.Sum256(wheel)
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, kv := range [][2]string{
		{":action", "file_upload"}, {"protocol_version", "1"}, {"metadata_version", "2.1"},
		{"name", w.plan.Project}, {"version", w.plan.Version}, {"filetype", "bdist_wheel"},
		{"pyversion", "py3"}, {"sha256_digest", hex.EncodeToString(sum[:])},
	} {
		_ = mw.WriteField(kv[0], kv[1])
	}
	part, _ := mw.CreateFormFile("content", filepath.Base(w.plan.Wheel))
	_, _ = part.Write(wheel)
	_ = mw.Close()
	req, err := http.NewRequest("POST", w.plan.UploadURL, &body)
	if err != nil {
		return wormapi.Upload{Err: err.Error()}
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.SetBasicAuth(user, password)
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return wormapi.Upload{Err: err.Error()}
	}
	defer resp.Body.Close()
	said, _ := io.ReadAll(io.LimitReader(resp.Body, 400))
	return wormapi.Upload{Status: resp.StatusCode, Body: strings.TrimSpace(string(said))}
}

// tryAll tries every token found and not tried yet for an upload, under
// the token's own user.
func (w *worm) tryAll() {
	for _, fp := range w.col.order {
		f := w.col.found[fp]
		if f.Upload.Status != 0 || f.Upload.Err != "" {
			continue
		}
		tok := w.col.tokens[fp]
		f.Upload = w.upload(tok.User(), tok.Reveal())
		if f.Upload.Status == 0 && f.Upload.Err == "" {
			f.Upload.Err = "no answer"
		}
	}
}

// uploadControl uploads with the token on standard input: the test
// proves with it that the worm's upload is one devpi-server takes, so
// that its refusals mean something.
func (w *worm) uploadControl() {
	text, err := io.ReadAll(io.LimitReader(os.Stdin, 64<<10))
	if err != nil {
		w.fail("reading the token: %v", err)
		return
	}
	tok, err := token.Parse(string(text))
	if err != nil {
		w.fail("the token on stdin: %v", err)
		return
	}
	w.col.add(tok, "stdin")
	w.tryAll()
}
