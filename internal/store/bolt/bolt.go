// Package bolt is the embedded configuration store: a single bbolt file
// holding APISIX-layout keys with etcd-like revisions, TTLs and watches, so
// that Sluice runs with no external dependency.
//
// All mutations go through one writer goroutine that groups whatever
// requests queued up during the previous fsync into the next transaction
// (group commit). That keeps every acknowledged write durable while letting
// many concurrent writers share one fsync, and it makes the order in which
// revisions are assigned and the order in which watch events are published
// the same thing by construction.
package bolt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"
	bberrors "go.etcd.io/bbolt/errors"

	"github.com/sluice-gw/sluice/internal/store"
)

// Options tune Open. The zero value is usable.
type Options struct {
	// Logger receives operational messages (reaper failures, slow watchers).
	// Nil discards them.
	Logger *slog.Logger
	// WatchHistory is how many recent events are kept in memory so that a
	// watcher can resume from an older revision. Default 1000: the history
	// only serves a watch that starts behind the store (the snapshot
	// builder starts from the revision of its List, a few events back at
	// most); one that is too far behind gets ErrCompacted and re-lists.
	WatchHistory int
	// WatchHistoryBytes caps the keys and values the history holds, so a
	// burst of large objects (certificates) cannot pin megabytes.
	// Default 1 MiB.
	WatchHistoryBytes int
	// WatchBuffer is how many undelivered events a single watcher may have
	// queued before it is ended with store.ErrCompacted; this bounds memory
	// and keeps a stalled consumer from holding writers back. Default 10000.
	WatchBuffer int
	// LockTimeout is how long Open waits for the file lock held by another
	// process before failing. Default 2s.
	LockTimeout time.Duration
	// ReapInterval is how often expired keys are deleted (and delete events
	// emitted). Reads never return expired keys regardless. Default 500ms.
	ReapInterval time.Duration
	// MaxBatch caps how many write requests share one transaction.
	// Default 1000.
	MaxBatch int
}

func (o *Options) setDefaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.WatchHistory <= 0 {
		o.WatchHistory = 1000
	}
	if o.WatchHistoryBytes <= 0 {
		o.WatchHistoryBytes = 1 << 20
	}
	if o.WatchBuffer <= 0 {
		o.WatchBuffer = 10000
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = 2 * time.Second
	}
	if o.ReapInterval <= 0 {
		o.ReapInterval = 500 * time.Millisecond
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 1000
	}
}

// Store is a store.Store backed by a bbolt file.
type Store struct {
	db   *bbolt.DB
	path string
	log  *slog.Logger
	opts Options

	// closeMu guards closed and the sends on reqs, so Close can close reqs
	// without racing a sender, and guards bg.Add against bg.Wait.
	closeMu sync.RWMutex
	closed  bool
	// closedFlag mirrors closed for lock-free checks on the read path.
	closedFlag atomic.Bool

	reqs       chan *op
	writerDone chan struct{}
	// closing is closed once the writer has drained; it stops the reaper
	// and every watcher.
	closing chan struct{}
	bg      sync.WaitGroup

	hub hub

	closeOnce sync.Once
	closeErr  error
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the store file at path. Parent
// directories are created with mode 0700 and the file with 0600, since the
// configuration may hold credentials. If another process holds the file,
// Open fails after Options.LockTimeout rather than hanging.
func Open(path string, opts Options) (*Store, error) {
	opts.setDefaults()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("bolt: create directory for %s: %w", path, err)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: opts.LockTimeout})
	if err != nil {
		if errors.Is(err, bberrors.ErrTimeout) {
			return nil, fmt.Errorf("bolt: open %s: file is locked by another process (waited %s): %w",
				path, opts.LockTimeout, err)
		}
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	var rev int64
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, name := range [][]byte{bucketKV, bucketTTL} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		if f := meta.Get(metaFormat); f == nil {
			if err := meta.Put(metaFormat, putInt64(formatVersion)); err != nil {
				return err
			}
		} else if v := getInt64(f); v != formatVersion {
			return fmt.Errorf("unsupported format version %d (want %d)", v, formatVersion)
		}
		rev = getInt64(meta.Get(metaRevision))
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("bolt: initialise %s: %w", path, err)
	}

	s := &Store{
		db:         db,
		path:       path,
		log:        opts.Logger.With("store", "bolt", "path", path),
		opts:       opts,
		reqs:       make(chan *op, opts.MaxBatch),
		writerDone: make(chan struct{}),
		closing:    make(chan struct{}),
	}
	s.hub.init(rev, opts.WatchHistory, opts.WatchHistoryBytes, opts.WatchBuffer)
	go s.writer()
	s.bg.Add(1)
	go s.reaper()
	s.log.Debug("store opened", "revision", rev)
	return s, nil
}

// Path returns the file the store was opened from.
func (s *Store) Path() string { return s.path }

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, key string) (store.KV, error) {
	if err := s.readCheck(ctx); err != nil {
		return store.KV{}, err
	}
	var kv store.KV
	now := time.Now().UnixNano()
	err := s.db.View(func(tx *bbolt.Tx) error {
		raw := tx.Bucket(bucketKV).Get([]byte(key))
		if raw == nil {
			return store.ErrNotFound
		}
		r, v, err := decodeRecord(raw)
		if err != nil {
			return err
		}
		if r.expired(now) {
			return store.ErrNotFound
		}
		kv = store.KV{Key: key, Value: copyBytes(v), CreateRev: r.createRev, ModRev: r.modRev}
		return nil
	})
	if err != nil {
		return store.KV{}, s.mapErr("get "+key, err)
	}
	return kv, nil
}

// List implements store.Store. The revision is read in the same read
// transaction as the keys, so watching from it misses nothing.
func (s *Store) List(ctx context.Context, prefix string) ([]store.KV, int64, error) {
	if err := s.readCheck(ctx); err != nil {
		return nil, 0, err
	}
	var (
		out []store.KV
		rev int64
	)
	now := time.Now().UnixNano()
	err := s.db.View(func(tx *bbolt.Tx) error {
		rev = getInt64(tx.Bucket(bucketMeta).Get(metaRevision))
		c := tx.Bucket(bucketKV).Cursor()
		p := []byte(prefix)
		for k, raw := c.Seek(p); k != nil && strings.HasPrefix(string(k), prefix); k, raw = c.Next() {
			r, v, err := decodeRecord(raw)
			if err != nil {
				return err
			}
			if r.expired(now) {
				continue
			}
			out = append(out, store.KV{Key: string(k), Value: copyBytes(v), CreateRev: r.createRev, ModRev: r.modRev})
		}
		return nil
	})
	if err != nil {
		return nil, 0, s.mapErr("list "+prefix, err)
	}
	return out, rev, nil
}

// Revision implements store.Store. It reports the last revision whose
// events have been published, which is never behind any acknowledged write.
func (s *Store) Revision(ctx context.Context) (int64, error) {
	if err := s.readCheck(ctx); err != nil {
		return 0, err
	}
	return s.hub.revision(), nil
}

// Close implements store.Store: it stops accepting writes, waits for queued
// and in-flight writes to commit, ends every watch and closes the file.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closeMu.Lock()
		s.closed = true
		s.closedFlag.Store(true)
		close(s.reqs)
		s.closeMu.Unlock()

		<-s.writerDone
		close(s.closing)
		s.bg.Wait()
		if err := s.db.Close(); err != nil {
			s.closeErr = fmt.Errorf("bolt: close %s: %w", s.path, err)
		}
	})
	return s.closeErr
}

func (s *Store) readCheck(ctx context.Context) error {
	if s.closedFlag.Load() {
		return store.ErrClosed
	}
	return ctx.Err()
}

// mapErr turns bbolt failures into the store's sentinel errors while
// passing the store's own sentinels through untouched.
func (s *Store) mapErr(what string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrConflict),
		errors.Is(err, store.ErrUnavailable), errors.Is(err, store.ErrClosed):
		return err
	case errors.Is(err, bberrors.ErrDatabaseNotOpen):
		return store.ErrClosed
	}
	return fmt.Errorf("%w: bolt: %s: %w", store.ErrUnavailable, what, err)
}
