// Package store defines the configuration store that every backend (the
// embedded bbolt file, etcd, a standalone apisix.yaml) implements.
//
// A store holds opaque JSON values under APISIX's key layout without the
// etcd prefix, e.g. "/routes/1" or "/consumers/jack/credentials/c1". Every
// change bumps a single store-wide revision, as etcd does, so that the Admin
// API can report createdIndex/modifiedIndex and a watcher can resume from the
// last revision it saw.
package store

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors. Callers test them with errors.Is.
var (
	// ErrNotFound is returned when a key does not exist.
	ErrNotFound = errors.New("key not found")
	// ErrConflict is returned when a compare-and-swap precondition fails.
	ErrConflict = errors.New("value changed before overwritten")
	// ErrCompacted is returned by Watch when the requested revision is no
	// longer available; the caller must re-list and watch from the new
	// revision.
	ErrCompacted = errors.New("revision compacted")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("store closed")
	// ErrUnavailable wraps backend failures (disk, network) that are not
	// the caller's fault; the Admin API maps it to 503.
	ErrUnavailable = errors.New("store unavailable")
)

// KV is one stored item.
type KV struct {
	Key       string // e.g. "/routes/1"
	Value     []byte // JSON
	CreateRev int64  // revision at which the key was created
	ModRev    int64  // revision of the last modification
}

// EventType says what happened to a key.
type EventType int

const (
	// EventPut means the key was created or replaced.
	EventPut EventType = iota
	// EventDelete means the key was removed (explicitly or by TTL expiry).
	EventDelete
)

// Event is one change delivered by Watch. For EventDelete, KV.Value is nil
// and KV.ModRev is the revision of the deletion.
type Event struct {
	Type EventType
	KV   KV
}

// PutOptions tune a Put.
type PutOptions struct {
	// TTL, when positive, makes the key vanish after that duration (the
	// Admin API's ?ttl=N). Zero means no expiry.
	TTL time.Duration
	// IfModRev, when non-nil, makes the Put conditional: it succeeds only if
	// the key's current ModRev equals *IfModRev (0 means "must not exist").
	// Otherwise ErrConflict is returned and nothing is written.
	IfModRev *int64
}

// Store is the configuration store. Implementations must be safe for
// concurrent use. A Put or Delete that returns without error is durable.
type Store interface {
	// Get returns one key or ErrNotFound.
	Get(ctx context.Context, key string) (KV, error)
	// List returns every key that starts with prefix, in lexicographic key
	// order, and the store revision the listing reflects.
	List(ctx context.Context, prefix string) ([]KV, int64, error)
	// Put writes a value. created reports whether the key did not exist.
	Put(ctx context.Context, key string, value []byte, opts PutOptions) (kv KV, created bool, err error)
	// Delete removes a key and returns what it held, or ErrNotFound.
	Delete(ctx context.Context, key string) (KV, error)
	// DeletePrefix removes every key starting with prefix (used when a
	// consumer is deleted together with its credentials). It returns the
	// number of keys removed.
	DeletePrefix(ctx context.Context, prefix string) (int, error)
	// NextID returns a new, strictly increasing number for POST id
	// generation (APISIX uses the etcd revision of a write to /gen_id).
	NextID(ctx context.Context) (int64, error)
	// Watch delivers, in revision order, every change with a revision
	// greater than fromRev, in batches, until ctx is cancelled; then the
	// channel is closed. If fromRev is too old to resume, the first and only
	// item carries Err = ErrCompacted.
	Watch(ctx context.Context, fromRev int64) <-chan WatchResponse
	// Revision returns the current store revision.
	Revision(ctx context.Context) (int64, error)
	// Close releases the store. Pending watches end.
	Close() error
}

// WatchResponse is one batch of events from Watch.
type WatchResponse struct {
	Events []Event
	// Revision is the store revision after these events.
	Revision int64
	// Err is set when the watch cannot continue (ErrCompacted, ErrClosed).
	Err error
}
