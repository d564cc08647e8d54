package bolt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"go.etcd.io/bbolt"

	"github.com/sluice-gw/sluice/internal/store"
)

// On-disk layout.
//
// Bucket "kv" maps each key to a record: a fixed header followed by the
// value bytes. Keeping the revisions next to the value means a Get or a
// prefix scan is a single B+tree lookup/walk with no second index.
//
// Bucket "ttl" is an expiry index: 8-byte big-endian expiry (Unix nanos)
// followed by the key, with an empty value. Sorting by expiry first lets the
// reaper stop at the first entry that is still alive instead of scanning
// every key.
//
// Bucket "meta" holds the store-wide revision and the format version.
var (
	bucketKV   = []byte("kv")
	bucketTTL  = []byte("ttl")
	bucketMeta = []byte("meta")

	metaRevision = []byte("revision")
	metaFormat   = []byte("format")
)

// formatVersion is written into every record header and into the meta
// bucket so that a later layout change can be detected instead of
// misreading bytes.
const formatVersion = 1

// headerSize is version(1) + createRev(8) + modRev(8) + expireAt(8).
const headerSize = 1 + 8 + 8 + 8

// ErrInvalidKey is returned for keys the store refuses to hold: empty keys,
// keys containing NUL (which would break prefix and expiry-index encoding
// assumptions and never occurs in APISIX's layout) and keys longer than
// bbolt allows.
var ErrInvalidKey = errors.New("invalid key")

// record is the decoded header of a stored key.
type record struct {
	createRev int64
	modRev    int64
	expireAt  int64 // Unix nanoseconds; 0 means no expiry
}

// expired reports whether the record's TTL has run out at now (Unix nanos).
func (r record) expired(now int64) bool {
	return r.expireAt != 0 && now >= r.expireAt
}

// encodeRecord returns a freshly allocated header+value buffer. bbolt keeps
// a reference to the slice until commit, so it must not be reused.
func encodeRecord(r record, value []byte) []byte {
	buf := make([]byte, headerSize+len(value))
	buf[0] = formatVersion
	binary.BigEndian.PutUint64(buf[1:9], uint64(r.createRev))
	binary.BigEndian.PutUint64(buf[9:17], uint64(r.modRev))
	binary.BigEndian.PutUint64(buf[17:25], uint64(r.expireAt))
	copy(buf[headerSize:], value)
	return buf
}

// decodeRecord splits a stored record. The returned value aliases raw, which
// bbolt only guarantees for the life of the transaction; callers copy it.
func decodeRecord(raw []byte) (record, []byte, error) {
	if len(raw) < headerSize || raw[0] != formatVersion {
		return record{}, nil, fmt.Errorf("%w: bolt: corrupt record header (len %d)", store.ErrUnavailable, len(raw))
	}
	r := record{
		createRev: int64(binary.BigEndian.Uint64(raw[1:9])),
		modRev:    int64(binary.BigEndian.Uint64(raw[9:17])),
		expireAt:  int64(binary.BigEndian.Uint64(raw[17:25])),
	}
	return r, raw[headerSize:], nil
}

// ttlKey builds the expiry-index key for key expiring at expireAt.
func ttlKey(expireAt int64, key string) []byte {
	b := make([]byte, 8+len(key))
	binary.BigEndian.PutUint64(b, uint64(expireAt))
	copy(b[8:], key)
	return b
}

// validateKey enforces the key rules shared by every mutating call.
func validateKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("bolt: %w: empty", ErrInvalidKey)
	case strings.IndexByte(key, 0) >= 0:
		return fmt.Errorf("bolt: %w: contains NUL", ErrInvalidKey)
	case len(key) > bbolt.MaxKeySize:
		return fmt.Errorf("bolt: %w: longer than %d bytes", ErrInvalidKey, bbolt.MaxKeySize)
	}
	return nil
}

func getInt64(b []byte) int64 {
	if len(b) != 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(b))
}

func putInt64(v int64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, uint64(v))
	return b
}

// copyBytes copies a bbolt-owned slice into Go memory; nil stays nil-free
// (an empty value is returned as an empty, non-nil slice so that a stored
// "" is distinguishable from a delete event's nil value).
func copyBytes(b []byte) []byte {
	out := make([]byte, len(b))
	copy(out, b)
	return out
}
