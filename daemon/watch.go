package daemon

import (
	"context"
	"os"
	"path/filepath"
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
	configDirs, tokenDirs := map[string]bool{}, map[string]bool{}
	rewatch := func() {
		for _, p := range w.WatchList() {
			_ = w.Remove(p)
		}
		cfg := d.cfg.Load()
		configDirs = map[string]bool{watchable(filepath.Dir(cfg.Path)): true}
		tokenDirs = map[string]bool{}
		for _, s := range cfg.Servers {
			if s.TokenFile != "" {
				tokenDirs[watchable(filepath.Dir(s.TokenFile))] = true
			}
		}
		for dir := range configDirs {
			if err := w.Add(dir); err != nil {
				d.log.Warn("cannot watch the config directory", "dir", dir, "err", err)
			}
		}
		for dir := range tokenDirs {
			if err := w.Add(dir); err != nil {
				d.log.Warn("cannot watch a token directory", "dir", dir, "err", err)
			}
		}
	}
	rewatch()

	cfgTimer := time.NewTimer(time.Hour)
	tokTimer := time.NewTimer(time.Hour)
	cfgTimer.Stop()
	tokTimer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			dir := filepath.Dir(ev.Name)
			if configDirs[dir] {
				cfgTimer.Reset(debounce)
			}
			if tokenDirs[dir] {
				tokTimer.Reset(debounce)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			d.log.Warn("file watch error; reloading everything", "err", err)
			cfgTimer.Reset(debounce)
		case <-reload: // SIGHUP
			cfgTimer.Reset(0)
		case <-cfgTimer.C:
			// The config names the token files: reload both, and watch
			// what the new config names.
			d.reloadConfig()
			rewatch()
		case <-tokTimer.C:
			d.reloadMu.Lock()
			d.loadRoots()
			d.reloadMu.Unlock()
			// A token directory may have just been created.
			rewatch()
		}
	}
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
