package config

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// System is what the config of a system-mode daemon says at its top
// (devpi-credd setup-system, docs/service.md): where its sockets are, and
// whom it serves with which of the owner's powers.
type System struct {
	Socket       string
	SharedSocket string
	// AllowUIDs and Grants are added to allow_uids and allow_uids_grant.
	AllowUIDs []int
	Grants    []string
}

const systemHeader = `# devpi-credd in system mode (docs/service.md): the daemon of
# devpi-credd-system.service reads this file as the devpi-credd user.
# 'devpi-credd setup-system' writes it, and keeps what else is here.
`

// EnsureSystem returns data, the bytes of the config file at path (none:
// no file yet), with s merged in: socket and shared_socket as s says,
// allow_uids and allow_uids_grant with s's besides their own. A key that
// already says what s asks is left as written, so that merging twice
// changes nothing; one that changes is rewritten where it is, and a
// missing one goes after the last top-level key (before the first table),
// so that comments, servers and every other key stay. data must be a
// valid config, and so is the result.
func EnsureSystem(path string, data []byte, s System, getenv func(string) string) ([]byte, error) {
	var doc map[string]any
	if len(bytes.TrimSpace(data)) == 0 {
		data = []byte(systemHeader)
	} else {
		if _, err := Parse(path, data, getenv); err != nil {
			return nil, fmt.Errorf("not changing the config: fix it first: %w", err)
		}
		if err := toml.Unmarshal(data, &doc); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	var lines []keyLine
	if cur, _ := rawKey(doc, "socket").(string); cur != s.Socket {
		lines = append(lines, keyLine{"socket", strconv.Quote(s.Socket)})
	}
	if cur, _ := rawKey(doc, "shared_socket").(string); cur != s.SharedSocket {
		lines = append(lines, keyLine{"shared_socket", strconv.Quote(s.SharedSocket)})
	}
	uids := rawList[int64](doc, "allow_uids")
	if more := union(uids, int64s(s.AllowUIDs)...); len(more) > len(uids) {
		lines = append(lines, keyLine{"allow_uids", tomlList(more, func(v int64) string { return strconv.FormatInt(v, 10) })})
	}
	grants := rawList[string](doc, "allow_uids_grant")
	if more := union(grants, s.Grants...); len(more) > len(grants) {
		lines = append(lines, keyLine{"allow_uids_grant", tomlList(more, strconv.Quote)})
	}
	if len(lines) == 0 {
		return data, nil
	}
	out, err := setTopLevel(data, lines)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if _, err := Parse(path, out, getenv); err != nil {
		return nil, fmt.Errorf("merging the system settings: %w", err)
	}
	return out, nil
}

// keyLine is a top-level key and its value, as TOML.
type keyLine struct{ key, value string }

// union is list and then the values it lacks, in their order.
func union[T comparable](list []T, values ...T) []T {
	out := slices.Clone(list)
	for _, v := range values {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

func int64s(list []int) []int64 {
	out := make([]int64, len(list))
	for i, v := range list {
		out[i] = int64(v)
	}
	return out
}

// rawList is the top-level array key of doc (go-toml's types: int64,
// string), without the elements of other types, which Parse refuses.
func rawList[T any](doc map[string]any, key string) []T {
	arr, _ := rawKey(doc, key).([]any)
	var out []T
	for _, v := range arr {
		if t, ok := v.(T); ok {
			out = append(out, t)
		}
	}
	return out
}

func tomlList[T any](list []T, format func(T) string) string {
	parts := make([]string, len(list))
	for i, v := range list {
		parts[i] = format(v)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// setTopLevel writes each line's key = value at the top level of the TOML
// document data: in place of the key's own lines where it is there
// (viper's keys fold case), else in one block after the last top-level
// key, or above the first table and the comment lines right above it.
func setTopLevel(data []byte, lines []keyLine) ([]byte, error) {
	spans, insert, err := topLevelSpans(data)
	if err != nil {
		return nil, err
	}
	type edit struct {
		start, end int
		text       string
	}
	var edits []edit
	var block strings.Builder
	for _, l := range lines {
		text := l.key + " = " + l.value + "\n"
		if sp, ok := spans[l.key]; ok {
			edits = append(edits, edit{sp[0], sp[1], text})
		} else {
			block.WriteString(text)
		}
	}
	if block.Len() > 0 {
		text := block.String()
		switch {
		case insert == len(data) && len(data) > 0 && data[len(data)-1] != '\n':
			text = "\n" + text
		case insert < len(data) && len(spans) == 0:
			text += "\n" // a blank line between the keys and the first table
		}
		edits = append(edits, edit{insert, insert, text})
	}
	// From the end, so that the offsets before each edit stay right: the
	// insertion point is at or after every span.
	slices.SortFunc(edits, func(a, b edit) int { return b.start - a.start })
	out := slices.Clone(data)
	for _, e := range edits {
		out = slices.Concat(out[:e.start], []byte(e.text), out[e.end:])
	}
	return out, nil
}

// topLevelSpans finds the lines of each top-level key of data (by its
// lower-case name: [start, end) from the start of its first line to the
// end of its value's last) and where new top-level keys go.
func topLevelSpans(data []byte) (map[string][2]int, int, error) {
	spans := map[string][2]int{}
	insert := -1
	var p unstable.Parser
	p.Reset(data)
	for p.NextExpression() {
		e := p.Expression()
		if e.Kind == unstable.Table || e.Kind == unstable.ArrayTable {
			if insert < 0 {
				insert = commentsAbove(data, lineStart(data, keyOffset(e)))
			}
			return spans, insert, nil
		}
		if e.Kind != unstable.KeyValue {
			continue
		}
		it := e.Key()
		it.Next()
		key := strings.ToLower(string(it.Node().Data))
		start := lineStart(data, keyOffset(e))
		end, err := valueEnd(data, start)
		if err != nil {
			return nil, 0, err
		}
		if !it.Next() { // a dotted key is a table's
			spans[key] = [2]int{start, end}
		}
		insert = end
	}
	if err := p.Error(); err != nil {
		return nil, 0, err
	}
	if insert < 0 {
		insert = len(data)
	}
	return spans, insert, nil
}

// keyOffset is where the key of a key/value or table expression starts.
func keyOffset(e *unstable.Node) int {
	it := e.Key()
	it.Next()
	return int(it.Node().Raw.Offset)
}

// valueEnd is the end of the key/value that starts the line at start: the
// end of the first line up to which data[start:] is a document by itself
// (an array or a multi-line string may span lines).
func valueEnd(data []byte, start int) (int, error) {
	for end := lineEnd(data, start); ; end = lineEnd(data, end) {
		var v map[string]any
		if toml.Unmarshal(data[start:end], &v) == nil {
			return end, nil
		}
		if end == len(data) {
			return 0, fmt.Errorf("cannot tell where the key at offset %d ends", start)
		}
	}
}

func lineStart(data []byte, i int) int { return bytes.LastIndexByte(data[:i], '\n') + 1 }

func lineEnd(data []byte, i int) int {
	if j := bytes.IndexByte(data[i:], '\n'); j >= 0 {
		return i + j + 1
	}
	return len(data)
}

// commentsAbove moves start back over the comment lines right above it,
// which belong to what follows them.
func commentsAbove(data []byte, start int) int {
	for start > 0 {
		prev := lineStart(data, start-1)
		if !bytes.HasPrefix(bytes.TrimSpace(data[prev:start]), []byte("#")) {
			break
		}
		start = prev
	}
	return start
}
