// Package yamlfile is the standalone store (config_provider: yaml): a
// read-only store.Store over APISIX's conf/apisix.yaml. The file is polled
// every second; each good version replaces the whole configuration, and
// the difference to the previous one is delivered to watchers as puts and
// deletes, so the snapshot builder rebuilds only what changed. A file that
// is broken (YAML syntax, missing "#END", unresolvable ${{VAR}}) is not
// loaded and the last good configuration keeps serving; single invalid
// items are skipped and reported while the rest is served.
package yamlfile

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sluice-gw/sluice/internal/resource"
	"github.com/sluice-gw/sluice/internal/store"
)

// DefaultPath is APISIX's location of the file, relative to the working
// directory.
const DefaultPath = "conf/apisix.yaml"

// historyCap is how many reloads Watch can replay for a watcher that asks
// for an older revision; older requests get store.ErrCompacted.
const historyCap = 64

// errReadOnly is returned by every write.
var errReadOnly = fmt.Errorf("read-only: config_provider is yaml: %w", store.ErrUnavailable)

// Options configure Open.
type Options struct {
	// Path of the file; DefaultPath when empty.
	Path string
	// Interval between checks of the file's mtime and size; 1 s (as in
	// APISIX) when zero.
	Interval time.Duration
	// Checker validates items with the plugin registry so that unknown
	// plugins and bad plugin confs reject their item. Nil runs only the
	// registry-free checks.
	Checker *resource.Checker
	// Logger receives reload results and problems; slog.Default() if nil.
	Logger *slog.Logger
}

// Store is the read-only store over an apisix.yaml.
type Store struct {
	path     string
	interval time.Duration
	chk      *resource.Checker
	log      *slog.Logger

	mu      sync.Mutex
	rev     int64
	items   map[string]store.KV
	plugins []string
	// problems of the last good load, for reports.
	problems []*Problem
	// history holds the events of recent reloads; every event with a
	// revision greater than histStart is in it.
	history   []store.Event
	histStart int64
	// changed is closed (and replaced) whenever rev advances.
	changed chan struct{}
	closed  bool
	// stat of the last file version read (good or bad), to skip unchanged
	// files cheaply.
	modTime time.Time
	size    int64
	lastErr string

	stop chan struct{}
	done chan struct{}
}

// Open reads the file and starts polling it. The first read must succeed:
// a gateway that starts with no config because of a typo would silently
// serve 404s, so a broken or missing file at start is an error.
func Open(opt Options) (*Store, error) {
	s := &Store{path: opt.Path, interval: opt.Interval, chk: opt.Checker, log: opt.Logger,
		items: map[string]store.KV{}, changed: make(chan struct{}),
		stop: make(chan struct{}), done: make(chan struct{})}
	if s.path == "" {
		s.path = DefaultPath
	}
	if s.interval <= 0 {
		s.interval = time.Second
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if err := s.reload(); err != nil {
		return nil, err
	}
	go s.poll()
	return s, nil
}

// Path returns the file the store reads.
func (s *Store) Path() string { return s.path }

// Plugins returns the `plugins:` list of the last good file, or nil when
// the file has none.
func (s *Store) Plugins() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.plugins...)
}

// Problems returns what was skipped in the last good file.
func (s *Store) Problems() []*Problem {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Problem(nil), s.problems...)
}

func (s *Store) poll() {
	defer close(s.done)
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		fi, err := os.Stat(s.path)
		if err != nil {
			s.report(fmt.Sprintf("%s: %v", s.path, err), "config file unreadable; keeping the last good config")
			continue
		}
		s.mu.Lock()
		same := fi.ModTime().Equal(s.modTime) && fi.Size() == s.size
		s.mu.Unlock()
		if same {
			continue
		}
		if err := s.reload(); err != nil {
			s.report(err.Error(), "config file not loaded; keeping the last good config")
		}
	}
}

// report logs a file-level error once per distinct message, not every
// second while it persists.
func (s *Store) report(msg, what string) {
	s.mu.Lock()
	repeat := msg == s.lastErr
	s.lastErr = msg
	s.mu.Unlock()
	if !repeat {
		s.log.Error(what, "err", msg)
	}
}

// reload reads and parses the file and, when it is good, replaces the
// configuration and publishes the difference.
func (s *Store) reload() error {
	fi, err := os.Stat(s.path)
	if err != nil {
		return fmt.Errorf("standalone config: %w", err)
	}
	data, err := os.ReadFile(s.path)
	if err != nil {
		return fmt.Errorf("standalone config: %w", err)
	}
	s.mu.Lock()
	// Remember the version even if it is broken, so a broken file is
	// reported once rather than re-parsed every second.
	s.modTime, s.size = fi.ModTime(), fi.Size()
	s.mu.Unlock()
	cfg, err := Parse(data, s.path, s.chk)
	if err != nil {
		return err
	}
	for _, p := range cfg.Problems {
		s.log.Warn("config item skipped", "err", p.Error())
	}
	s.apply(cfg)
	return nil
}

// apply replaces the configuration with cfg and records the difference as
// one revision. A reload that changes nothing (the file was touched, or
// only comments changed) publishes no revision, so watchers and the
// snapshot builder do no work for it.
func (s *Store) apply(cfg *Config) {
	next := make(map[string][]byte, len(cfg.Items))
	for _, it := range cfg.Items {
		next[it.Key] = it.Value
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastErr = ""
	if cfg.Plugins != nil && !slices.Equal(cfg.Plugins, s.plugins) {
		// APISIX reloads its plugin set from this list; Sluice's
		// registry is fixed at start, so say so instead of pretending.
		s.log.Warn("the plugins: list of the standalone file is not applied; enable plugins in config.yaml", "file", s.path, "plugins", strings.Join(cfg.Plugins, ","))
	}
	s.plugins = cfg.Plugins
	s.problems = cfg.Problems
	rev := s.rev + 1
	var evs []store.Event
	for key, kv := range s.items {
		if _, ok := next[key]; !ok {
			evs = append(evs, store.Event{Type: store.EventDelete, KV: store.KV{Key: key, CreateRev: kv.CreateRev, ModRev: rev}})
			delete(s.items, key)
		}
	}
	for key, val := range next {
		old, ok := s.items[key]
		if ok && bytes.Equal(old.Value, val) {
			continue
		}
		kv := store.KV{Key: key, Value: val, CreateRev: rev, ModRev: rev}
		if ok {
			kv.CreateRev = old.CreateRev
		}
		s.items[key] = kv
		evs = append(evs, store.Event{Type: store.EventPut, KV: kv})
	}
	if len(evs) == 0 && s.rev > 0 {
		return
	}
	sort.Slice(evs, func(i, j int) bool { return evs[i].KV.Key < evs[j].KV.Key })
	s.rev = rev
	s.history = append(s.history, evs...)
	// Keep whole revisions only, so histStart stays exact.
	if reloads := countRevs(s.history); reloads > historyCap {
		cut := 0
		for r := s.history[0].KV.ModRev; cut < len(s.history) && s.history[cut].KV.ModRev == r; cut++ {
		}
		s.histStart = s.history[cut-1].KV.ModRev
		s.history = append([]store.Event(nil), s.history[cut:]...)
	}
	puts, dels := 0, 0
	for _, e := range evs {
		if e.Type == store.EventPut {
			puts++
		} else {
			dels++
		}
	}
	s.log.Info("standalone config loaded", "file", s.path, "revision", rev, "items", len(s.items),
		"changed", puts, "removed", dels, "skipped", len(cfg.Problems))
	close(s.changed)
	s.changed = make(chan struct{})
}

func countRevs(evs []store.Event) int {
	n := 0
	var last int64 = -1
	for _, e := range evs {
		if e.KV.ModRev != last {
			n++
			last = e.KV.ModRev
		}
	}
	return n
}

// Get returns one key or store.ErrNotFound.
func (s *Store) Get(ctx context.Context, key string) (store.KV, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.KV{}, store.ErrClosed
	}
	kv, ok := s.items[key]
	if !ok {
		return store.KV{}, store.ErrNotFound
	}
	return kv, nil
}

// List returns every key with the prefix in key order, and the revision.
func (s *Store) List(ctx context.Context, prefix string) ([]store.KV, int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, 0, store.ErrClosed
	}
	var out []store.KV
	for k, kv := range s.items {
		if strings.HasPrefix(k, prefix) {
			out = append(out, kv)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, s.rev, nil
}

// Put fails: the file is the only source of configuration.
func (s *Store) Put(ctx context.Context, key string, value []byte, opts store.PutOptions) (store.KV, bool, error) {
	return store.KV{}, false, errReadOnly
}

// Delete fails: the file is the only source of configuration.
func (s *Store) Delete(ctx context.Context, key string) (store.KV, error) {
	return store.KV{}, errReadOnly
}

// DeletePrefix fails: the file is the only source of configuration.
func (s *Store) DeletePrefix(ctx context.Context, prefix string) (int, error) {
	return 0, errReadOnly
}

// NextID fails: ids come from the file.
func (s *Store) NextID(ctx context.Context) (int64, error) {
	return 0, errReadOnly
}

// Revision returns the current revision (one per reload that changed
// something).
func (s *Store) Revision(ctx context.Context) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, store.ErrClosed
	}
	return s.rev, nil
}

// Watch delivers the changes of every reload after fromRev, one batch per
// reload, until ctx ends or the store is closed.
func (s *Store) Watch(ctx context.Context, fromRev int64) <-chan store.WatchResponse {
	ch := make(chan store.WatchResponse, 1)
	go func() {
		defer close(ch)
		last := fromRev
		for {
			s.mu.Lock()
			if s.closed {
				s.mu.Unlock()
				send(ctx, ch, store.WatchResponse{Err: store.ErrClosed})
				return
			}
			if last < s.histStart && last < s.rev {
				s.mu.Unlock()
				send(ctx, ch, store.WatchResponse{Err: store.ErrCompacted})
				return
			}
			var batches []store.WatchResponse
			for _, e := range s.history {
				if e.KV.ModRev <= last {
					continue
				}
				if n := len(batches); n == 0 || batches[n-1].Revision != e.KV.ModRev {
					batches = append(batches, store.WatchResponse{Revision: e.KV.ModRev})
				}
				b := &batches[len(batches)-1]
				b.Events = append(b.Events, e)
			}
			if len(batches) > 0 {
				last = batches[len(batches)-1].Revision
			}
			changed := s.changed
			s.mu.Unlock()
			for _, b := range batches {
				if !send(ctx, ch, b) {
					return
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-changed:
			case <-s.stop:
			}
		}
	}()
	return ch
}

func send(ctx context.Context, ch chan<- store.WatchResponse, r store.WatchResponse) bool {
	select {
	case ch <- r:
		return true
	case <-ctx.Done():
		return false
	}
}

// Close stops polling and ends every watch.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	close(s.stop)
	<-s.done
	return nil
}

// Compile-time check that Store satisfies the interface.
var _ store.Store = (*Store)(nil)
