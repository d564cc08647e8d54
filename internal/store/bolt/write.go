package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/bbolt"

	"github.com/sluice-gw/sluice/internal/store"
)

// op is one queued mutation. fn runs inside the writer's transaction and
// must reset and then record its own results each time it runs, because a
// batch that fails is retried op by op. fn returns an error only for
// failures that must abort the transaction; logical outcomes such as
// ErrConflict are recorded in the closure and fn returns nil.
type op struct {
	fn   func(tx *bbolt.Tx, st *txState) error
	done chan error
}

// txState accumulates the revision counter and the events produced by the
// ops of one transaction, to be published after it commits.
type txState struct {
	now   int64 // Unix nanos, one clock reading per transaction
	rev   int64
	start int64
	evs   []store.Event
	// dirty marks writes that do not consume a revision (dropping a stale
	// expiry-index entry), so the transaction still commits.
	dirty bool
}

// bump allocates the next revision.
func (st *txState) bump() int64 {
	st.rev++
	return st.rev
}

// errNoChange rolls back a transaction whose ops changed nothing, so that
// a batch of failed compare-and-swaps does not cost an fsync.
var errNoChange = errors.New("no change")

// submit queues fn and waits for its transaction to commit. Once queued the
// op is waited for even if ctx ends, so a nil return always means durable
// and a non-nil return after queueing means it was not applied.
func (s *Store) submit(ctx context.Context, fn func(*bbolt.Tx, *txState) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	o := &op{fn: fn, done: make(chan error, 1)}
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return store.ErrClosed
	}
	select {
	case s.reqs <- o:
	case <-ctx.Done():
		s.closeMu.RUnlock()
		return ctx.Err()
	}
	s.closeMu.RUnlock()
	return <-o.done
}

// writer is the single goroutine that owns write transactions. Requests
// that arrive while a commit (and its fsync) is in progress queue in reqs
// and are committed together next round: group commit without any added
// latency for a lone writer.
func (s *Store) writer() {
	defer close(s.writerDone)
	batch := make([]*op, 0, s.opts.MaxBatch)
	for first := range s.reqs {
		batch = append(batch[:0], first)
	drain:
		for len(batch) < s.opts.MaxBatch {
			select {
			case o, ok := <-s.reqs:
				if !ok {
					break drain
				}
				batch = append(batch, o)
			default:
				break drain
			}
		}
		s.commit(batch)
		clear(batch)
	}
}

// commit runs a batch in one transaction. If the transaction fails and it
// held several ops, each is retried alone so that one bad op cannot fail
// its neighbours.
func (s *Store) commit(batch []*op) {
	st, err := s.runTx(batch)
	if err != nil && len(batch) > 1 {
		for _, o := range batch {
			s.commit([]*op{o})
		}
		return
	}
	if err == nil {
		s.hub.publish(st.evs, st.rev)
	} else {
		err = s.mapErr("write", err)
	}
	for _, o := range batch {
		o.done <- err
	}
}

func (s *Store) runTx(batch []*op) (*txState, error) {
	st := &txState{now: time.Now().UnixNano()}
	err := s.db.Update(func(tx *bbolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		st.rev = getInt64(meta.Get(metaRevision))
		st.start = st.rev
		for _, o := range batch {
			if err := o.fn(tx, st); err != nil {
				return err
			}
		}
		if st.rev == st.start {
			if st.dirty {
				return nil
			}
			return errNoChange
		}
		return meta.Put(metaRevision, putInt64(st.rev))
	})
	if errors.Is(err, errNoChange) {
		err = nil
	}
	return st, err
}

// liveRecord loads key's header inside a write transaction. A key whose TTL
// has passed but that the reaper has not removed yet is removed here, with
// its own revision and delete event, so that watchers see the expiry before
// whatever the caller does next to that key.
func liveRecord(tx *bbolt.Tx, st *txState, key string) (record, []byte, bool, error) {
	kvb := tx.Bucket(bucketKV)
	raw := kvb.Get([]byte(key))
	if raw == nil {
		return record{}, nil, false, nil
	}
	r, v, err := decodeRecord(raw)
	if err != nil {
		return record{}, nil, false, err
	}
	if !r.expired(st.now) {
		return r, v, true, nil
	}
	if err := removeKey(tx, st, key, r, st.bump()); err != nil {
		return record{}, nil, false, err
	}
	return record{}, nil, false, nil
}

// removeKey deletes key and its expiry-index entry and records a delete
// event at rev.
func removeKey(tx *bbolt.Tx, st *txState, key string, r record, rev int64) error {
	if err := tx.Bucket(bucketKV).Delete([]byte(key)); err != nil {
		return err
	}
	if r.expireAt != 0 {
		if err := tx.Bucket(bucketTTL).Delete(ttlKey(r.expireAt, key)); err != nil {
			return err
		}
	}
	st.evs = append(st.evs, store.Event{Type: store.EventDelete, KV: store.KV{Key: key, ModRev: rev}})
	return nil
}

// Put implements store.Store.
func (s *Store) Put(ctx context.Context, key string, value []byte, opts store.PutOptions) (store.KV, bool, error) {
	if err := validateKey(key); err != nil {
		return store.KV{}, false, err
	}
	if opts.TTL < 0 {
		return store.KV{}, false, fmt.Errorf("bolt: put %s: negative ttl %s", key, opts.TTL)
	}
	// Copy once up front: the caller may reuse its buffer after we return,
	// and the event published to watchers must not change under them.
	val := copyBytes(value)
	var ifModRev *int64
	if opts.IfModRev != nil {
		v := *opts.IfModRev
		ifModRev = &v
	}
	var (
		res     store.KV
		created bool
		lerr    error
	)
	err := s.submit(ctx, func(tx *bbolt.Tx, st *txState) error {
		res, created, lerr = store.KV{}, false, nil
		old, _, exists, err := liveRecord(tx, st, key)
		if err != nil {
			return err
		}
		if ifModRev != nil {
			var cur int64
			if exists {
				cur = old.modRev
			}
			if cur != *ifModRev {
				lerr = store.ErrConflict
				return nil
			}
		}
		rev := st.bump()
		r := record{createRev: rev, modRev: rev}
		if exists {
			r.createRev = old.createRev
			if old.expireAt != 0 {
				if err := tx.Bucket(bucketTTL).Delete(ttlKey(old.expireAt, key)); err != nil {
					return err
				}
			}
		}
		if opts.TTL > 0 {
			r.expireAt = st.now + int64(opts.TTL)
			if err := tx.Bucket(bucketTTL).Put(ttlKey(r.expireAt, key), nil); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketKV).Put([]byte(key), encodeRecord(r, val)); err != nil {
			return err
		}
		res = store.KV{Key: key, Value: val, CreateRev: r.createRev, ModRev: r.modRev}
		created = !exists
		st.evs = append(st.evs, store.Event{Type: store.EventPut, KV: res})
		return nil
	})
	if err != nil {
		return store.KV{}, false, err
	}
	if lerr != nil {
		return store.KV{}, false, fmt.Errorf("bolt: put %s: %w", key, lerr)
	}
	// Hand the caller its own copy so that it cannot alter the value seen by
	// watchers.
	res.Value = copyBytes(res.Value)
	return res, created, nil
}

// Delete implements store.Store.
func (s *Store) Delete(ctx context.Context, key string) (store.KV, error) {
	if err := validateKey(key); err != nil {
		return store.KV{}, err
	}
	var (
		res  store.KV
		lerr error
	)
	err := s.submit(ctx, func(tx *bbolt.Tx, st *txState) error {
		res, lerr = store.KV{}, nil
		old, v, exists, err := liveRecord(tx, st, key)
		if err != nil {
			return err
		}
		if !exists {
			lerr = store.ErrNotFound
			return nil
		}
		res = store.KV{Key: key, Value: copyBytes(v), CreateRev: old.createRev, ModRev: old.modRev}
		return removeKey(tx, st, key, old, st.bump())
	})
	if err != nil {
		return store.KV{}, err
	}
	if lerr != nil {
		return store.KV{}, fmt.Errorf("bolt: delete %s: %w", key, lerr)
	}
	return res, nil
}

// DeletePrefix implements store.Store. All keys removed share one revision,
// as an etcd range delete does. An empty prefix is refused: wiping the whole
// store is never what a caller building "/consumers/<name>/" meant.
func (s *Store) DeletePrefix(ctx context.Context, prefix string) (int, error) {
	if prefix == "" {
		return 0, fmt.Errorf("bolt: delete prefix: %w: empty prefix", ErrInvalidKey)
	}
	var n int
	err := s.submit(ctx, func(tx *bbolt.Tx, st *txState) error {
		n = 0
		type victim struct {
			key string
			r   record
		}
		var victims []victim
		c := tx.Bucket(bucketKV).Cursor()
		for k, raw := c.Seek([]byte(prefix)); k != nil && strings.HasPrefix(string(k), prefix); k, raw = c.Next() {
			r, _, err := decodeRecord(raw)
			if err != nil {
				return err
			}
			victims = append(victims, victim{string(k), r})
		}
		if len(victims) == 0 {
			return nil
		}
		rev := st.bump()
		for _, v := range victims {
			if !v.r.expired(st.now) {
				n++
			}
			if err := removeKey(tx, st, v.key, v.r, rev); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// NextID implements store.Store: it consumes one revision and returns it,
// like APISIX's write to /gen_id, so ids are unique and increasing across
// restarts without storing anything else.
func (s *Store) NextID(ctx context.Context) (int64, error) {
	var id int64
	err := s.submit(ctx, func(_ *bbolt.Tx, st *txState) error {
		id = st.bump()
		return nil
	})
	if err != nil {
		return 0, err
	}
	return id, nil
}

// reapBatch bounds how many expired keys one reaper transaction removes so
// that a mass expiry cannot hold the writer for long.
const reapBatch = 1000

// reaper deletes expired keys in the background so that watchers get
// delete events for them; reads already hide them.
func (s *Store) reaper() {
	defer s.bg.Done()
	t := time.NewTicker(s.opts.ReapInterval)
	defer t.Stop()
	for {
		n, err := s.reapOnce()
		if err != nil && !errors.Is(err, store.ErrClosed) {
			s.log.Warn("ttl reaper failed", "err", err)
		}
		if n == reapBatch {
			continue // more may be waiting
		}
		select {
		case <-s.closing:
			return
		case <-t.C:
		}
	}
}

// reapOnce removes up to reapBatch expired keys, each with its own revision.
func (s *Store) reapOnce() (int, error) {
	// Peek in a read transaction first so that an idle tick does not take
	// the writer's turn (and bbolt's write lock) for nothing.
	now := time.Now().UnixNano()
	var anyDue bool
	err := s.db.View(func(tx *bbolt.Tx) error {
		k, _ := tx.Bucket(bucketTTL).Cursor().First()
		anyDue = len(k) >= 8 && int64(binary.BigEndian.Uint64(k[:8])) <= now
		return nil
	})
	if err != nil || !anyDue {
		return 0, s.mapErr("reap", err)
	}
	var n int
	err = s.submit(context.Background(), func(tx *bbolt.Tx, st *txState) error {
		n = 0
		type due struct {
			idx []byte
			key string
		}
		var list []due
		c := tx.Bucket(bucketTTL).Cursor()
		for k, _ := c.First(); k != nil && len(list) < reapBatch; k, _ = c.Next() {
			if len(k) < 8 {
				continue
			}
			if int64(binary.BigEndian.Uint64(k[:8])) > st.now {
				break
			}
			list = append(list, due{bytes.Clone(k), string(k[8:])})
		}
		kvb := tx.Bucket(bucketKV)
		for _, d := range list {
			raw := kvb.Get([]byte(d.key))
			var r record
			var err error
			if raw != nil {
				r, _, err = decodeRecord(raw)
				if err != nil {
					return err
				}
			}
			if raw == nil || r.expireAt != int64(binary.BigEndian.Uint64(d.idx[:8])) {
				// Stale index entry; the key was rewritten or removed.
				if err := tx.Bucket(bucketTTL).Delete(d.idx); err != nil {
					return err
				}
				st.dirty = true
				continue
			}
			if err := removeKey(tx, st, d.key, r, st.bump()); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}
