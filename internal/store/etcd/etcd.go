// Package etcd is the cluster configuration store: store.Store on an etcd
// v3 cluster, in APISIX's key layout, so that many Sluice nodes (and APISIX
// nodes) can share one configuration.
//
// A store key such as "/routes/1" lives at the etcd key "<prefix>/routes/1"
// (prefix "/apisix" by default) and its value is the JSON exactly as the
// Admin API wrote it. Revisions are etcd's own: CreateRev and ModRev are the
// key's create_revision and mod_revision, a listing reports the response
// header's revision, and NextID is the revision of a write to
// "<prefix>/gen_id", which is how APISIX numbers POSTed objects.
//
// Every request is bounded: it waits at most DialTimeout for a connection
// to etcd and at most RequestTimeout in total, so that the Admin API answers
// 503 quickly when etcd is down instead of hanging. Watches are not bounded;
// the etcd client re-establishes them with backoff after a lost connection
// and resumes from the last revision delivered.
package etcd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/connectivity"

	"github.com/sluice-gw/sluice/internal/store"
)

// ErrInvalidKey is returned for a key that cannot be stored: empty, or not
// starting with "/" (which would let it escape the prefix).
var ErrInvalidKey = errors.New("invalid key")

// genIDKey is APISIX's scratch key for POST id generation.
const genIDKey = "/gen_id"

// initDirValue is what APISIX's CLI writes to each resource directory key
// ("/apisix/routes/") at startup; it is not JSON and not an object.
const initDirValue = "init_dir"

// bookkeeping lists keys under the prefix that APISIX uses for itself and
// that are not configuration objects: they never appear in List or Watch.
// "/plugins" is the plugin list written by APISIX's admin node;
// "/data_plane/" holds data plane heartbeats.
var bookkeeping = []string{genIDKey, "/plugins"}

// bookkeepingDirs are prefixes of bookkeeping keys.
var bookkeepingDirs = []string{"/data_plane/"}

// Options configure Open.
type Options struct {
	// Endpoints are the etcd client URLs, e.g. "http://127.0.0.1:2379".
	Endpoints []string
	// Prefix is prepended to every store key. Default "/apisix"; a trailing
	// slash is ignored.
	Prefix string
	// DialTimeout bounds how long a request waits for a connection to etcd
	// before it fails with store.ErrUnavailable. Default 2s.
	DialTimeout time.Duration
	// RequestTimeout bounds every request (not watches). Default 5s.
	RequestTimeout time.Duration
	// Username and Password enable etcd authentication when both are set.
	Username, Password string
	// TLS is used for the connection; nil means plain TCP, unless an
	// endpoint is https://, in which case the system roots are used.
	TLS *tls.Config
	// Logger receives operational messages. Nil discards them.
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	if o.Prefix == "" {
		o.Prefix = "/apisix"
	}
	o.Prefix = strings.TrimRight(o.Prefix, "/")
	if o.DialTimeout <= 0 {
		o.DialTimeout = 2 * time.Second
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Store is a store.Store on etcd.
type Store struct {
	cli    *clientv3.Client
	opts   Options
	prefix string
	log    *slog.Logger
	closed atomic.Bool

	// maxRev is the highest revision seen in any response. If etcd comes
	// back with a lower one (restored from an old backup, or a new cluster
	// on the same address), resumed watches would wait for revisions that
	// now mean something else, so every watch is ended to force a re-list,
	// as APISIX does on a lower revision.
	maxRev atomic.Int64
	// resetMu guards reset, which is closed (and replaced) to end every
	// running watch.
	resetMu sync.Mutex
	reset   chan struct{}
	stop    context.CancelFunc
}

var _ store.Store = (*Store)(nil)

// Open connects to etcd and checks that it answers within DialTimeout +
// RequestTimeout, so that a wrong address or bad credentials are reported
// at startup rather than as a gateway that never becomes ready.
func Open(ctx context.Context, opts Options) (*Store, error) {
	opts.setDefaults()
	if len(opts.Endpoints) == 0 {
		return nil, errors.New("etcd: no endpoints")
	}
	tlsCfg := opts.TLS
	if tlsCfg == nil {
		for _, e := range opts.Endpoints {
			if strings.HasPrefix(e, "https://") {
				tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12}
				break
			}
		}
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   opts.Endpoints,
		DialTimeout: opts.DialTimeout,
		Username:    opts.Username,
		Password:    opts.Password,
		TLS:         tlsCfg,
		// The client's own zap logging would bypass slog; connection
		// trouble surfaces through our errors instead.
		Logger: zap.NewNop(),
		// Keepalives detect a silently dead etcd (a partition rather than a
		// killed process) so that requests fail over or fail fast.
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		PermitWithoutStream:  true,
		// gRPC's default reconnect backoff grows to two minutes, which
		// would leave a node on stale config long after etcd is back;
		// reconnecting to a local cluster at least every second is cheap.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: opts.DialTimeout,
		})},
	})
	if err != nil {
		return nil, fmt.Errorf("%w: etcd: connect to %s: %w", store.ErrUnavailable, strings.Join(opts.Endpoints, ","), err)
	}
	s := &Store{cli: cli, opts: opts, prefix: opts.Prefix, log: opts.Logger, reset: make(chan struct{})}
	if _, err := s.Revision(ctx); err != nil {
		_ = cli.Close()
		return nil, err
	}
	mctx, stop := context.WithCancel(context.Background())
	s.stop = stop
	go s.monitor(mctx)
	s.log.Debug("etcd store opened", "endpoints", opts.Endpoints, "prefix", opts.Prefix)
	return s, nil
}

// ClientTLS builds the client TLS settings of deployment.etcd.tls: an
// optional client certificate, server verification (verify false skips it,
// as APISIX allows) and the server name to expect.
func ClientTLS(certFile, keyFile, serverName string, verify bool, caFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName, InsecureSkipVerify: !verify} //nolint:gosec // verify=false is an explicit operator choice
	if certFile != "" || keyFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("etcd tls: load client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("etcd tls: read ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("etcd tls: no certificates in %s", caFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// seen records a response's revision.
func (s *Store) seen(rev int64) {
	for {
		cur := s.maxRev.Load()
		if rev <= cur || s.maxRev.CompareAndSwap(cur, rev) {
			return
		}
	}
}

// resetCh returns the channel that is closed when watches must end.
func (s *Store) resetCh() <-chan struct{} {
	s.resetMu.Lock()
	defer s.resetMu.Unlock()
	return s.reset
}

// monitor checks etcd's revision each time the connection comes back after
// being lost, and ends every watch if the revision went backwards.
func (s *Store) monitor(ctx context.Context) {
	conn := s.cli.ActiveConnection()
	st := conn.GetState()
	for conn.WaitForStateChange(ctx, st) {
		prev := st
		st = conn.GetState()
		if st != connectivity.Ready || prev == connectivity.Ready {
			continue
		}
		before := s.maxRev.Load()
		rctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
		resp, err := s.cli.Get(rctx, s.etcdKey(genIDKey), clientv3.WithCountOnly())
		cancel()
		if err != nil {
			continue
		}
		if now := resp.Header.Revision; now < before {
			s.log.Warn("etcd revision went backwards after reconnecting; re-listing", "was", before, "now", now)
			s.maxRev.Store(now)
			s.resetMu.Lock()
			close(s.reset)
			s.reset = make(chan struct{})
			s.resetMu.Unlock()
		}
	}
}

// Client returns the underlying etcd client (for tests and tools).
func (s *Store) Client() *clientv3.Client { return s.cli }

// Prefix returns the etcd key prefix in use, without a trailing slash.
func (s *Store) Prefix() string { return s.prefix }

// Close implements store.Store. Pending watches end with store.ErrClosed.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.stop()
	if err := s.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("etcd: close: %w", err)
	}
	return nil
}

// etcdKey maps a store key to its etcd key.
func (s *Store) etcdKey(key string) string { return s.prefix + key }

// storeKey maps an etcd key back; ok is false for keys outside the prefix.
func (s *Store) storeKey(k []byte) (string, bool) {
	key, ok := strings.CutPrefix(string(k), s.prefix)
	if !ok || !strings.HasPrefix(key, "/") {
		return "", false
	}
	return key, true
}

// hidden reports whether an etcd item is APISIX bookkeeping rather than
// configuration: a directory marker (key ending in "/", value init_dir) or
// one of the scratch keys.
func hidden(key string, value []byte) bool {
	if strings.HasSuffix(key, "/") && string(value) == initDirValue {
		return true
	}
	for _, b := range bookkeeping {
		if key == b {
			return true
		}
	}
	for _, d := range bookkeepingDirs {
		if strings.HasPrefix(key, d) {
			return true
		}
	}
	return false
}

func validateKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("etcd: %w: empty", ErrInvalidKey)
	case !strings.HasPrefix(key, "/"):
		return fmt.Errorf("etcd: %w: %q does not start with /", ErrInvalidKey, key)
	}
	return nil
}

// toKV converts an etcd item; the value is copied so callers may keep or
// modify it, and an empty value stays non-nil (nil means "deleted").
func toKV(key string, kv *mvccpb.KeyValue) store.KV {
	v := make([]byte, len(kv.Value))
	copy(v, kv.Value)
	return store.KV{Key: key, Value: v, CreateRev: kv.CreateRevision, ModRev: kv.ModRevision}
}

// request prepares ctx for one etcd request: it fails fast if the store is
// closed or no connection becomes ready within DialTimeout, and bounds the
// request by RequestTimeout.
func (s *Store) request(ctx context.Context, what string) (context.Context, context.CancelFunc, error) {
	if s.closed.Load() {
		return nil, nil, store.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	cctx, cancelCause := context.WithCancelCause(ctx)
	rctx, cancelT := context.WithTimeout(cctx, s.opts.RequestTimeout)
	cancel := func() { cancelT(); cancelCause(nil) }
	if err := s.waitReady(rctx); err != nil {
		cancel()
		if ctx.Err() != nil {
			return nil, nil, fmt.Errorf("etcd: %s: %w", what, ctx.Err())
		}
		return nil, nil, fmt.Errorf("%w: etcd: %s: %s unreachable: %v", store.ErrUnavailable, what, strings.Join(s.opts.Endpoints, ","), err)
	}
	go s.watchdog(rctx, cancelCause)
	return rctx, cancel, nil
}

// errConnLost is the cause of a request cancelled by watchdog.
var errConnLost = errors.New("connection to etcd lost")

// watchdog cancels a request whose connection is lost and does not come
// back within DialTimeout. The etcd client sends requests with gRPC's
// wait-for-ready and retries reads on a broken connection, so a request
// caught by etcd going down would otherwise wait for the whole
// RequestTimeout (APISIX's default is 30s) before the Admin API answers.
func (s *Store) watchdog(rctx context.Context, cancel context.CancelCauseFunc) {
	conn := s.cli.ActiveConnection()
	st := conn.GetState()
	for {
		if st != connectivity.Ready {
			wctx, stop := context.WithTimeout(rctx, s.opts.DialTimeout)
			for st != connectivity.Ready && conn.WaitForStateChange(wctx, st) {
				st = conn.GetState()
			}
			stop()
			if st != connectivity.Ready {
				if rctx.Err() == nil {
					cancel(errConnLost)
				}
				return
			}
		}
		if !conn.WaitForStateChange(rctx, st) {
			return
		}
		st = conn.GetState()
	}
}

// waitReady waits up to DialTimeout for the client connection to be ready.
// The etcd client otherwise queues requests until their deadline while it
// reconnects, which would make every Admin API call hang for the whole
// RequestTimeout when etcd is down.
func (s *Store) waitReady(ctx context.Context) error {
	conn := s.cli.ActiveConnection()
	st := conn.GetState()
	if st == connectivity.Ready {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, s.opts.DialTimeout)
	defer cancel()
	for {
		switch st {
		case connectivity.Ready:
			return nil
		case connectivity.Idle:
			conn.Connect()
		case connectivity.Shutdown:
			return store.ErrClosed
		}
		if !conn.WaitForStateChange(wctx, st) {
			return fmt.Errorf("no connection within %s (state %s)", s.opts.DialTimeout, st)
		}
		st = conn.GetState()
	}
}

// mapErr turns an etcd client failure into the store's errors: the caller's
// own cancellation stays as it is, a closed client is store.ErrClosed and
// everything else is store.ErrUnavailable with a readable reason.
func (s *Store) mapErr(ctx, rctx context.Context, what string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrConflict),
		errors.Is(err, store.ErrUnavailable), errors.Is(err, store.ErrClosed):
		return err
	case s.closed.Load():
		return store.ErrClosed
	case ctx.Err() != nil:
		return fmt.Errorf("etcd: %s: %w", what, ctx.Err())
	case errors.Is(context.Cause(rctx), errConnLost):
		return fmt.Errorf("%w: etcd: %s: %s: %v", store.ErrUnavailable, what, errConnLost, err)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: etcd: %s: no answer within %s", store.ErrUnavailable, what, s.opts.RequestTimeout)
	}
	return fmt.Errorf("%w: etcd: %s: %w", store.ErrUnavailable, what, err)
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, key string) (store.KV, error) {
	what := "get " + key
	rctx, cancel, err := s.request(ctx, what)
	if err != nil {
		return store.KV{}, err
	}
	defer cancel()
	resp, err := s.cli.Get(rctx, s.etcdKey(key))
	if err != nil {
		return store.KV{}, s.mapErr(ctx, rctx, what, err)
	}
	s.seen(resp.Header.Revision)
	if len(resp.Kvs) == 0 || hidden(key, resp.Kvs[0].Value) {
		return store.KV{}, store.ErrNotFound
	}
	return toKV(key, resp.Kvs[0]), nil
}

// List implements store.Store. The revision is the response header's, so
// watching from it resumes exactly after the listing.
func (s *Store) List(ctx context.Context, prefix string) ([]store.KV, int64, error) {
	what := "list " + prefix
	if prefix == "" {
		prefix = "/"
	}
	rctx, cancel, err := s.request(ctx, what)
	if err != nil {
		return nil, 0, err
	}
	defer cancel()
	resp, err := s.cli.Get(rctx, s.etcdKey(prefix), clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, 0, s.mapErr(ctx, rctx, what, err)
	}
	s.seen(resp.Header.Revision)
	out := make([]store.KV, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		key, ok := s.storeKey(kv.Key)
		if !ok || hidden(key, kv.Value) {
			continue
		}
		out = append(out, toKV(key, kv))
	}
	if len(out) == 0 {
		out = nil
	}
	return out, resp.Header.Revision, nil
}

// Revision implements store.Store with a count-only read, which returns
// the cluster's current revision in its header.
func (s *Store) Revision(ctx context.Context) (int64, error) {
	rctx, cancel, err := s.request(ctx, "revision")
	if err != nil {
		return 0, err
	}
	defer cancel()
	resp, err := s.cli.Get(rctx, s.etcdKey(genIDKey), clientv3.WithCountOnly())
	if err != nil {
		return 0, s.mapErr(ctx, rctx, "revision", err)
	}
	s.seen(resp.Header.Revision)
	return resp.Header.Revision, nil
}

// Put implements store.Store. A TTL becomes an etcd lease (rounded up to
// whole seconds, etcd's unit); a Put without TTL detaches any earlier
// lease. IfModRev is a transaction comparing the key's mod_revision, which
// etcd reports as 0 for a missing key.
func (s *Store) Put(ctx context.Context, key string, value []byte, opts store.PutOptions) (store.KV, bool, error) {
	if err := validateKey(key); err != nil {
		return store.KV{}, false, err
	}
	what := "put " + key
	rctx, cancel, err := s.request(ctx, what)
	if err != nil {
		return store.KV{}, false, err
	}
	defer cancel()
	ops := []clientv3.OpOption{clientv3.WithPrevKV()}
	var lease clientv3.LeaseID
	if opts.TTL > 0 {
		secs := int64(math.Ceil(opts.TTL.Seconds()))
		lr, err := s.cli.Grant(rctx, secs)
		if err != nil {
			return store.KV{}, false, s.mapErr(ctx, rctx, what+": grant lease", err)
		}
		lease = lr.ID
		ops = append(ops, clientv3.WithLease(lease))
	}
	ek := s.etcdKey(key)
	var (
		rev  int64
		prev *mvccpb.KeyValue
	)
	if opts.IfModRev == nil {
		resp, err := s.cli.Put(rctx, ek, string(value), ops...)
		if err != nil {
			s.revoke(lease)
			return store.KV{}, false, s.mapErr(ctx, rctx, what, err)
		}
		rev, prev = resp.Header.Revision, resp.PrevKv
	} else {
		resp, err := s.cli.Txn(rctx).
			If(clientv3.Compare(clientv3.ModRevision(ek), "=", *opts.IfModRev)).
			Then(clientv3.OpPut(ek, string(value), ops...)).
			Commit()
		if err != nil {
			s.revoke(lease)
			return store.KV{}, false, s.mapErr(ctx, rctx, what, err)
		}
		if !resp.Succeeded {
			s.revoke(lease)
			return store.KV{}, false, fmt.Errorf("etcd: %s: %w", what, store.ErrConflict)
		}
		rev = resp.Header.Revision
		if len(resp.Responses) > 0 {
			if pr := resp.Responses[0].GetResponsePut(); pr != nil {
				prev = pr.PrevKv
			}
		}
	}
	s.seen(rev)
	v := make([]byte, len(value))
	copy(v, value)
	kv := store.KV{Key: key, Value: v, CreateRev: rev, ModRev: rev}
	created := prev == nil
	if !created {
		kv.CreateRev = prev.CreateRevision
	}
	return kv, created, nil
}

// revoke drops a lease granted for a write that did not happen. It is best
// effort: an unused lease expires on its own.
func (s *Store) revoke(lease clientv3.LeaseID) {
	if lease == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.RequestTimeout)
	defer cancel()
	if _, err := s.cli.Revoke(ctx, lease); err != nil {
		s.log.Debug("etcd: revoking unused lease", "err", err)
	}
}

// Delete implements store.Store.
func (s *Store) Delete(ctx context.Context, key string) (store.KV, error) {
	if err := validateKey(key); err != nil {
		return store.KV{}, err
	}
	what := "delete " + key
	rctx, cancel, err := s.request(ctx, what)
	if err != nil {
		return store.KV{}, err
	}
	defer cancel()
	resp, err := s.cli.Delete(rctx, s.etcdKey(key), clientv3.WithPrevKV())
	if err != nil {
		return store.KV{}, s.mapErr(ctx, rctx, what, err)
	}
	if resp.Deleted == 0 || len(resp.PrevKvs) == 0 {
		return store.KV{}, store.ErrNotFound
	}
	return toKV(key, resp.PrevKvs[0]), nil
}

// DeletePrefix implements store.Store with one range delete, which etcd
// applies atomically at a single revision.
func (s *Store) DeletePrefix(ctx context.Context, prefix string) (int, error) {
	if err := validateKey(prefix); err != nil {
		return 0, err
	}
	what := "delete prefix " + prefix
	rctx, cancel, err := s.request(ctx, what)
	if err != nil {
		return 0, err
	}
	defer cancel()
	resp, err := s.cli.Delete(rctx, s.etcdKey(prefix), clientv3.WithPrefix())
	if err != nil {
		return 0, s.mapErr(ctx, rctx, what, err)
	}
	return int(resp.Deleted), nil
}

// NextID implements store.Store the way APISIX does: write "<prefix>/gen_id"
// and use the revision of that write, which is unique and increasing across
// every node sharing the etcd cluster.
func (s *Store) NextID(ctx context.Context) (int64, error) {
	rctx, cancel, err := s.request(ctx, "next id")
	if err != nil {
		return 0, err
	}
	defer cancel()
	resp, err := s.cli.Put(rctx, s.etcdKey(genIDKey), "1")
	if err != nil {
		return 0, s.mapErr(ctx, rctx, "next id", err)
	}
	s.seen(resp.Header.Revision)
	return resp.Header.Revision, nil
}
