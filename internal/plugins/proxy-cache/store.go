package proxycache

import (
	"hash/maphash"
	"sync"
	"time"

	"github.com/sluice-gw/sluice/internal/engine"
)

// nShards splits a zone so concurrent hits on different keys rarely wait
// on the same mutex.
const nShards = 32

// itemOverhead approximates the bookkeeping bytes of one entry (list
// links, map slot, struct headers) so many tiny entries still count.
const itemOverhead = 256

// Object is one cached response. It is immutable once stored, so readers
// use it after the shard lock is released.
type Object struct {
	Status int
	Header engine.Header
	Body   []byte
	// TTL is how long the object is fresh; Stamp is when it was stored.
	TTL   time.Duration
	Stamp time.Time
}

// index lists the Vary variants stored under one cache key.
type index struct {
	vary     []string
	variants []string
}

// Store is one cache zone: a byte-bounded LRU split into shards. Expired
// entries stay until they are evicted or replaced, like an nginx shared
// dict, so a lookup can tell EXPIRED from MISS.
type Store struct {
	seed   maphash.Seed
	shards [nShards]shard
}

type shard struct {
	mu     sync.Mutex
	m      map[string]*item
	head   *item // most recently used
	tail   *item
	bytes  int64
	budget int64
}

type item struct {
	key        string
	val        any // *Object or *index
	size       int64
	expires    time.Time
	prev, next *item
}

// NewStore returns a zone holding at most maxBytes (split evenly across
// shards; an object larger than one shard's share is never stored).
func NewStore(maxBytes int64) *Store {
	s := &Store{seed: maphash.MakeSeed()}
	per := maxBytes / nShards
	if per < 1 {
		per = 1
	}
	for i := range s.shards {
		s.shards[i].m = map[string]*item{}
		s.shards[i].budget = per
	}
	return s
}

// MaxObject is the largest entry size (body, headers and key) the store
// accepts.
func (s *Store) MaxObject() int64 { return s.shards[0].budget - itemOverhead }

func (s *Store) shard(key []byte) *shard {
	return &s.shards[maphash.Bytes(s.seed, key)%nShards]
}

// get returns the value under key and whether it has expired; ok is false
// when there is none.
func (s *Store) get(key []byte, now time.Time) (val any, expired, ok bool) {
	sh := s.shard(key)
	sh.mu.Lock()
	it := sh.m[string(key)]
	if it == nil {
		sh.mu.Unlock()
		return nil, false, false
	}
	sh.moveFront(it)
	val, expired = it.val, !it.expires.IsZero() && now.After(it.expires)
	sh.mu.Unlock()
	return val, expired, true
}

// set stores val under key for ttl (0 = no expiry), evicting the least
// recently used entries of the shard to make room. It reports false when
// the entry is too large for the shard.
func (s *Store) set(key []byte, val any, size int64, ttl time.Duration, now time.Time) bool {
	size += int64(len(key)) + itemOverhead
	sh := s.shard(key)
	if size > sh.budget {
		return false
	}
	var exp time.Time
	if ttl > 0 {
		exp = now.Add(ttl)
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if it := sh.m[string(key)]; it != nil {
		sh.bytes += size - it.size
		it.val, it.size, it.expires = val, size, exp
		sh.moveFront(it)
	} else {
		it := &item{key: string(key), val: val, size: size, expires: exp}
		sh.m[it.key] = it
		sh.pushFront(it)
		sh.bytes += size
	}
	for sh.bytes > sh.budget && sh.tail != nil {
		sh.remove(sh.tail)
	}
	return true
}

// del removes key; it reports whether there was an entry.
func (s *Store) del(key []byte) bool {
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	it := sh.m[string(key)]
	if it == nil {
		return false
	}
	sh.remove(it)
	return true
}

// Bytes returns the accounted size of every entry, for tests and metrics.
func (s *Store) Bytes() int64 {
	var n int64
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += sh.bytes
		sh.mu.Unlock()
	}
	return n
}

func (sh *shard) pushFront(it *item) {
	it.prev, it.next = nil, sh.head
	if sh.head != nil {
		sh.head.prev = it
	}
	sh.head = it
	if sh.tail == nil {
		sh.tail = it
	}
}

func (sh *shard) unlink(it *item) {
	if it.prev != nil {
		it.prev.next = it.next
	} else {
		sh.head = it.next
	}
	if it.next != nil {
		it.next.prev = it.prev
	} else {
		sh.tail = it.prev
	}
	it.prev, it.next = nil, nil
}

func (sh *shard) moveFront(it *item) {
	if sh.head == it {
		return
	}
	sh.unlink(it)
	sh.pushFront(it)
}

func (sh *shard) remove(it *item) {
	sh.unlink(it)
	delete(sh.m, it.key)
	sh.bytes -= it.size
}

// objectSize approximates an object's memory: body, header names and
// values.
func objectSize(o *Object) int64 {
	n := int64(len(o.Body))
	for k, vv := range o.Header {
		n += int64(len(k)) + 16
		for _, v := range vv {
			n += int64(len(v)) + 16
		}
	}
	return n
}
