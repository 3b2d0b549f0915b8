package daemon

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/devpi-credd/devpi-credd/internal/safefile"
)

// debounce lets an editor's save or a secret rotation (several events:
// write, rename, chmod) settle before reloading once.
const debounce = 100 * time.Millisecond

// watcher reloads the config when its directory changes, and the root
// tokens when a token file's directory changes. Directories, not files:
// editors, Vault Agent and Kubernetes replace files by rename or symlink
// swap, which a watch on the file itself would lose. A directory that does
// not exist yet is covered by watching its nearest existing parent.
//
// No change may be lost: watches still wanted are kept across reloads
// (a new one is added before an old one is removed), and after every
// (re)arming, and now and then, the files are compared with what was
// loaded, so a lost notification costs at most one debounce.
type watcher struct {
	d  *Daemon
	fs *fsnotify.Watcher // nil where the system gives none: polling only
	// For each watched directory, the names in it whose change matters.
	configNames, tokenNames watchSet
	cfgTimer, tokTimer      *time.Timer
	poll                    time.Duration
}

// newWatcher arms the watches for the config in force, before the daemon
// answers anyone, and schedules a reload for whatever changed since the
// config and tokens were loaded.
func (d *Daemon) newWatcher() *watcher {
	w := &watcher{d: d, poll: d.opts.PollEvery, cfgTimer: time.NewTimer(time.Hour), tokTimer: time.NewTimer(time.Hour)}
	w.cfgTimer.Stop()
	w.tokTimer.Stop()
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		d.log.Warn("cannot watch files; checking them every 2s instead", "err", err)
		w.poll = min(w.poll, 2*time.Second)
	} else {
		w.fs = fw
	}
	w.arm()
	return w
}

// arm watches what the config in force names, keeping the watches that
// are still wanted, then compares the files with what was loaded.
func (w *watcher) arm() {
	cfg := w.d.Config()
	w.configNames, w.tokenNames = watchSet{}, watchSet{}
	w.configNames.add(cfg.Path)
	for _, s := range cfg.Servers {
		if s.TokenFile != "" {
			w.tokenNames.add(s.TokenFile)
		}
	}
	if w.fs != nil {
		want := map[string]bool{}
		for _, set := range []watchSet{w.configNames, w.tokenNames} {
			for dir := range set {
				want[dir] = true
			}
		}
		// WatchList, not a list of our own: a directory that was removed
		// has lost its watch, and must be added again.
		have := map[string]bool{}
		for _, dir := range w.fs.WatchList() {
			have[dir] = true
		}
		for dir := range want {
			if !have[dir] {
				if err := w.fs.Add(dir); err != nil {
					w.d.log.Warn("cannot watch a directory", "dir", dir, "err", err)
				}
			}
		}
		for dir := range have {
			if !want[dir] {
				_ = w.fs.Remove(dir)
			}
		}
	}
	w.check()
}

// check schedules a reload of whatever differs on disk from what was
// loaded.
func (w *watcher) check() {
	cfg, tok := w.d.drift()
	if cfg {
		w.cfgTimer.Reset(debounce)
	}
	if tok {
		w.tokTimer.Reset(debounce)
	}
}

func (w *watcher) run(ctx context.Context, reload <-chan struct{}) {
	var events chan fsnotify.Event
	var errs chan error
	if w.fs != nil {
		defer w.fs.Close()
		events, errs = w.fs.Events, w.fs.Errors
	}
	poll := time.NewTicker(w.poll)
	defer poll.Stop()
	// The OS keychain sends no events: read it again now and then.
	keychain := time.NewTicker(30 * time.Second)
	defer keychain.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if w.configNames.matches(ev.Name) {
				w.cfgTimer.Reset(debounce)
			}
			if w.tokenNames.matches(ev.Name) {
				w.tokTimer.Reset(debounce)
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			w.d.log.Warn("file watch error; reloading everything", "err", err)
			w.cfgTimer.Reset(debounce)
			w.tokTimer.Reset(debounce)
		case <-reload: // SIGHUP: also reopen the audit log, for log rotation
			if err := w.d.reopenAudit(w.d.Config().AuditLog); err != nil {
				w.d.log.Error("reopening the audit log", "err", err)
			}
			w.cfgTimer.Reset(0)
			w.tokTimer.Reset(0)
		case <-poll.C:
			w.check()
		case <-keychain.C:
			for _, s := range w.d.Config().Servers {
				if s.Keychain {
					w.tokTimer.Reset(0)
					break
				}
			}
		case <-w.cfgTimer.C:
			// The config names the token files: reload both, and watch
			// what the new config names.
			w.d.reloadConfig()
			w.arm()
		case <-w.tokTimer.C:
			w.d.reloadRoots()
			// A token directory may have just been created, or a symlink
			// may point elsewhere now.
			w.arm()
		}
	}
}

// stampOf is what a file holds, as a string to compare: its mode and a
// hash of its content, or why it cannot be read. Content, not timestamps:
// two saves within the file system's clock tick look the same by mtime.
func stampOf(path string) string {
	data, st, err := safefile.Read(path, 1<<20)
	if err != nil {
		return "error: " + err.Error()
	}
	return fmt.Sprintf("%v %x", st.Mode(), sha256.Sum256(data))
}

// watchSet maps a watched directory to the entry names in it that matter.
type watchSet map[string]map[string]bool

// add registers file: its directory (or, while that does not exist, the
// nearest existing ancestor and the next name on the way down), Kubernetes'
// "..data" symlink beside it, and, for a symlink, the target's directory.
func (ws watchSet) add(file string) {
	ws.addPath(file)
	if real, err := filepath.EvalSymlinks(file); err == nil && real != file {
		ws.addPath(real)
	}
}

func (ws watchSet) addPath(file string) {
	dir, name := filepath.Dir(file), filepath.Base(file)
	at := watchable(dir)
	if at != dir {
		rel, err := filepath.Rel(at, dir)
		if err != nil {
			return
		}
		name = strings.SplitN(rel, string(filepath.Separator), 2)[0]
	}
	if ws[at] == nil {
		ws[at] = map[string]bool{}
	}
	ws[at][name] = true
	ws[at]["..data"] = true
}

func (ws watchSet) matches(path string) bool {
	return ws[filepath.Dir(path)][filepath.Base(path)]
}

// watchable returns dir, or its nearest existing ancestor.
func watchable(dir string) string {
	for {
		if st, err := os.Stat(dir); err == nil && st.IsDir() {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return dir
		}
		dir = parent
	}
}
