package daemon

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// debounce lets an editor's save or a secret rotation (several events:
// write, rename, chmod) settle before reloading once.
const debounce = 100 * time.Millisecond

// watch reloads the config when its directory changes, and the root tokens
// when a token file's directory changes. Directories, not files: editors,
// Vault Agent and Kubernetes replace files by rename or symlink swap, which
// a watch on the file itself would lose. A directory that does not exist
// yet is covered by watching its nearest existing parent.
func (d *Daemon) watch(ctx context.Context, reload <-chan struct{}) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer w.Close()
	// For each watched directory, the names in it whose change matters.
	var configNames, tokenNames watchSet
	rewatch := func() {
		for _, p := range w.WatchList() {
			_ = w.Remove(p)
		}
		cfg := d.Config()
		configNames, tokenNames = watchSet{}, watchSet{}
		configNames.add(cfg.Path)
		for _, s := range cfg.Servers {
			if s.TokenFile != "" {
				tokenNames.add(s.TokenFile)
			}
		}
		for _, set := range []watchSet{configNames, tokenNames} {
			for dir := range set {
				if err := w.Add(dir); err != nil {
					d.log.Warn("cannot watch a directory", "dir", dir, "err", err)
				}
			}
		}
	}
	rewatch()

	cfgTimer := time.NewTimer(time.Hour)
	tokTimer := time.NewTimer(time.Hour)
	cfgTimer.Stop()
	tokTimer.Stop()
	// The OS keychain sends no events: read it again now and then.
	keychain := time.NewTicker(30 * time.Second)
	defer keychain.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if configNames.matches(ev.Name) {
				cfgTimer.Reset(debounce)
			}
			if tokenNames.matches(ev.Name) {
				tokTimer.Reset(debounce)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			d.log.Warn("file watch error; reloading everything", "err", err)
			cfgTimer.Reset(debounce)
			tokTimer.Reset(debounce)
		case <-reload: // SIGHUP: also reopen the audit log, for log rotation
			if err := d.reopenAudit(d.Config().AuditLog); err != nil {
				d.log.Error("reopening the audit log", "err", err)
			}
			cfgTimer.Reset(0)
			tokTimer.Reset(0)
		case <-keychain.C:
			for _, s := range d.Config().Servers {
				if s.Keychain {
					tokTimer.Reset(0)
					break
				}
			}
		case <-cfgTimer.C:
			// The config names the token files: reload both, and watch
			// what the new config names.
			d.reloadConfig()
			rewatch()
		case <-tokTimer.C:
			d.reloadRoots()
			// A token directory may have just been created, or a symlink
			// may point elsewhere now.
			rewatch()
		}
	}
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
