//go:build linux

package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"gopkg.in/macaroon.v2"

	"github.com/devpi-credd/devpi-credd/e2e/worm/wormapi"
	"github.com/devpi-credd/devpi-credd/token"
)

// Bounds of the scan: a worm reads what it can in a few seconds.
const (
	maxFileBytes   = 1 << 20 // tokens sit in configs and logs, not in big binaries
	maxScanBytes   = 1 << 30 // files and memory together
	maxProcMem     = 256 << 20
	memChunk       = 1 << 20
	chunkOverlap   = 8 << 10 // a token cut by a chunk's end is whole in the next
	maxBinaryToken = 8 << 10
	minTokenText   = 24
	fileReaders    = 8
)

// textStarts are how a devpi token's text begins, after its optional
// "devpi-" prefix: base64 of a V2 macaroon, whose first byte is 2 and
// second a location (1) or identifier (2) field.
var textStarts = [][]byte{[]byte("AgE"), []byte("AgI")}

// binaryStarts are the same two beginnings, unencoded: a token held in
// memory as bytes.
var binaryStarts = [][]byte{{2, 1}, {2, 2}}

// collector keeps every distinct token seen, by the fingerprint of its
// signature, with where it was seen.
type collector struct {
	mu     sync.Mutex
	found  map[string]*wormapi.Found
	tokens map[string]*token.Token
	order  []string
	bytes  int64 // scanned so far, against maxScanBytes
}

func (c *collector) scanned() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes
}

func newCollector() *collector {
	return &collector{found: map[string]*wormapi.Found{}, tokens: map[string]*token.Token{}}
}

func fingerprint(t *token.Token) string { return wormapi.Fingerprint(t.Signature()) }

// add records tok as seen at source and reports whether it is new.
func (c *collector) add(tok *token.Token, source string) bool {
	fp := fingerprint(tok)
	c.mu.Lock()
	defer c.mu.Unlock()
	if f, ok := c.found[fp]; ok {
		if !slices.Contains(f.Sources, source) {
			f.Sources = append(f.Sources, source)
		}
		return false
	}
	c.found[fp] = &wormapi.Found{Fingerprint: fp, User: tok.User(), ID: tok.ID(), Caveats: tok.Caveats(), Sources: []string{source}}
	c.tokens[fp] = tok
	c.order = append(c.order, fp)
	return true
}

// scan looks for tokens in data, as text (with or without the prefix, in
// either base64 alphabet) and as a binary macaroon, and returns how many
// it saw (new or not). Every place a token could begin is tried: strings
// in memory have no terminator, so a token's text may run on into other
// base64, or follow some.
func (c *collector) scan(data []byte, source string) int {
	c.mu.Lock()
	c.bytes += int64(len(data))
	c.mu.Unlock()
	n := 0
	each := func(starts [][]byte, try func(at []byte) *token.Token) {
		for _, start := range starts {
			for i := 0; ; i++ {
				j := bytes.Index(data[i:], start)
				if j < 0 {
					break
				}
				i += j
				if tok := try(data[i:min(len(data), i+maxBinaryToken*4/3)]); tok != nil {
					c.add(tok, source)
					n++
				}
			}
		}
	}
	each(textStarts, fromText)
	each(binaryStarts, fromBinary)
	return n
}

// fromText reads a token's text at the start of b, in the URL-safe
// alphabet (devpi's) or the standard one (a careless re-encoding).
func fromText(b []byte) *token.Token {
	for _, alphabet := range []struct {
		enc   *base64.Encoding
		extra string
	}{{base64.RawURLEncoding, "-_"}, {base64.RawStdEncoding, "+/"}} {
		end := 0
		for end < len(b) && (isAlnum(b[end]) || strings.IndexByte(alphabet.extra, b[end]) >= 0) {
			end++
		}
		if end < minTokenText {
			continue
		}
		if end%4 == 1 {
			end-- // not base64 there: what follows the token
		}
		raw, err := alphabet.enc.DecodeString(string(b[:end]))
		if err != nil {
			continue
		}
		if tok := fromBinary(raw); tok != nil {
			return tok
		}
	}
	return nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// fromBinary reads a V2 macaroon at the start of raw, ignoring what
// follows it, and returns it if it is a devpi token.
func fromBinary(raw []byte) *token.Token {
	var m macaroon.Macaroon
	if err := m.UnmarshalBinary(raw); err != nil {
		return nil
	}
	bin, err := m.MarshalBinary()
	if err != nil {
		return nil
	}
	tok, err := token.Parse(base64.RawURLEncoding.EncodeToString(bin))
	if err != nil {
		return nil
	}
	return tok
}

// scanFiles reads every regular file it may under roots, once each,
// several at a time: on a cold cache the disk is what takes the time.
func (w *worm) scanFiles(roots []string) {
	paths := make(chan string)
	var wg sync.WaitGroup
	var mu sync.Mutex // the report's counts and seen
	seen := map[[2]uint64]bool{}
	for range fileReaders {
		wg.Go(func() {
			buf := make([]byte, maxFileBytes)
			for path := range paths {
				data, id, err := readRegular(path, buf)
				if err != nil {
					continue
				}
				mu.Lock()
				dup := seen[id]
				seen[id] = true
				if !dup {
					w.rep.Files++
				}
				mu.Unlock()
				if !dup {
					w.col.scan(data, "file:"+path)
				}
			}
		})
	}
	for _, root := range roots {
		_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() || w.col.scanned() >= maxScanBytes {
				return nil // unreadable directories are skipped, not fatal
			}
			paths <- path
			return nil
		})
	}
	close(paths)
	wg.Wait()
}

// readRegular reads the start of a regular file into buf, without
// following a link or blocking on a FIFO that took its name meanwhile.
func readRegular(path string, buf []byte) ([]byte, [2]uint64, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, [2]uint64{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return nil, [2]uint64{}, errors.New("not a regular file")
	}
	sys := st.Sys().(*syscall.Stat_t)
	n, err := io.ReadFull(f, buf)
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		err = nil
	}
	return buf[:n], [2]uint64{sys.Dev, sys.Ino}, err
}

// pids lists the processes in /proc, but the worm's own.
func pids() []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err == nil && pid != os.Getpid() {
			out = append(out, pid)
		}
	}
	return out
}

// scanProcs reads every environ, cmdline and mem it can open.
func (w *worm) scanProcs() {
	for _, pid := range pids() {
		dir := fmt.Sprintf("/proc/%d/", pid)
		if data, err := os.ReadFile(dir + "environ"); err == nil {
			w.rep.Environs++
			w.col.scan(data, fmt.Sprintf("environ:%d", pid))
		}
		if data, err := os.ReadFile(dir + "cmdline"); err == nil {
			w.rep.Cmdlines++
			w.col.scan(data, fmt.Sprintf("cmdline:%d", pid))
		}
		if w.col.scanned() < maxScanBytes {
			if n, err := w.scanMem(pid); err == nil {
				w.rep.Mems++
				w.rep.MemBytes += n
			}
		}
	}
}

// scanMem reads pid's readable mappings through /proc/PID/mem, in chunks
// that overlap, up to maxProcMem.
func (w *worm) scanMem(pid int) (int64, error) {
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return 0, err
	}
	mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		return 0, err
	}
	defer mem.Close()
	source := fmt.Sprintf("mem:%d", pid)
	var total int64
	buf := make([]byte, chunkOverlap+memChunk)
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() && total < maxProcMem && w.col.scanned() < maxScanBytes {
		start, end, ok := readableRange(sc.Text())
		if !ok {
			continue
		}
		kept := 0 // bytes carried from the previous chunk, at buf's start
		for addr := start; addr < end && total < maxProcMem; {
			want := int(min(memChunk, end-addr))
			n, _ := mem.ReadAt(buf[kept:kept+want], int64(addr))
			if n <= 0 {
				break // a page that cannot be read ends the mapping
			}
			w.col.scan(buf[:kept+n], source)
			total += int64(n)
			addr += uint64(n)
			// A token across the chunk's end is whole in the next one.
			have := kept + n
			kept = min(chunkOverlap, have)
			copy(buf, buf[have-kept:have])
		}
	}
	return total, nil
}

// readableRange parses a /proc/PID/maps line; the kernel's own pages
// (vvar, vsyscall) are not worth reading and can fault.
func readableRange(line string) (start, end uint64, ok bool) {
	fields := strings.Fields(line)
	if len(fields) < 2 || fields[1][0] != 'r' {
		return 0, 0, false
	}
	if len(fields) >= 6 && strings.HasPrefix(fields[5], "[v") {
		return 0, 0, false
	}
	lo, hi, found := strings.Cut(fields[0], "-")
	if !found {
		return 0, 0, false
	}
	s, err1 := strconv.ParseUint(lo, 16, 64)
	e, err2 := strconv.ParseUint(hi, 16, 64)
	return s, e, err1 == nil && err2 == nil && e > s
}
