package etcd

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sluice-gw/sluice/internal/store"
)

// Watch implements store.Store on one etcd watch of the whole prefix,
// starting at fromRev+1.
//
// The etcd client keeps the watch alive across lost connections: it
// reconnects with backoff and resumes from the last revision it delivered,
// so an etcd restart is invisible here apart from the pause. What cannot be
// resumed is reported, never swallowed: a compacted start revision is one
// response with store.ErrCompacted, and a watch that ends for any other
// reason (the server cancelled it, the client was closed) is one response
// with an error, so the gateway's builder re-lists instead of silently
// following nothing.
//
// WatchResponse.Revision is the revision of the last event in the batch,
// not the etcd header's: etcd may split a catch-up into several responses
// that all carry the current header revision, and resuming from that would
// skip the events still to come.
func (s *Store) Watch(ctx context.Context, fromRev int64) <-chan store.WatchResponse {
	out := make(chan store.WatchResponse, 16)
	if s.closed.Load() {
		out <- store.WatchResponse{Err: store.ErrClosed}
		close(out)
		return out
	}
	// WithRequireLeader is deliberately not used: with it, a member that
	// loses its leader ends the watch, while without it the client simply
	// waits for the cluster to heal.
	wch := s.cli.Watch(ctx, s.prefix+"/", clientv3.WithPrefix(), clientv3.WithRev(fromRev+1))
	go s.serveWatch(ctx, wch, out)
	return out
}

func (s *Store) serveWatch(ctx context.Context, wch clientv3.WatchChan, out chan<- store.WatchResponse) {
	defer close(out)
	send := func(r store.WatchResponse) bool {
		select {
		case out <- r:
			return true
		case <-ctx.Done():
			return false
		}
	}
	reset := s.resetCh()
	for {
		var (
			resp clientv3.WatchResponse
			ok   bool
		)
		select {
		case resp, ok = <-wch:
		case <-reset:
			send(store.WatchResponse{Err: fmt.Errorf("%w: etcd: revision went backwards (etcd restored or replaced)", store.ErrCompacted)})
			return
		case <-ctx.Done():
			return
		}
		if !ok {
			if ctx.Err() != nil {
				return
			}
			err := fmt.Errorf("%w: etcd: watch ended", store.ErrUnavailable)
			if s.closed.Load() {
				err = store.ErrClosed
			}
			send(store.WatchResponse{Err: err})
			return
		}
		if resp.CompactRevision != 0 || errors.Is(resp.Err(), rpctypes.ErrCompacted) {
			s.log.Info("etcd watch start revision compacted", "compact_revision", resp.CompactRevision)
			send(store.WatchResponse{Err: fmt.Errorf("etcd: watch: compacted at revision %d: %w", resp.CompactRevision, store.ErrCompacted)})
			return
		}
		if err := resp.Err(); err != nil {
			if ctx.Err() != nil {
				return
			}
			if s.closed.Load() {
				send(store.WatchResponse{Err: store.ErrClosed})
				return
			}
			send(store.WatchResponse{Err: fmt.Errorf("%w: etcd: watch: %w", store.ErrUnavailable, err)})
			return
		}
		s.seen(resp.Header.Revision)
		if resp.IsProgressNotify() || len(resp.Events) == 0 {
			continue
		}
		var wr store.WatchResponse
		for _, ev := range resp.Events {
			key, ok := s.storeKey(ev.Kv.Key)
			if !ok {
				continue
			}
			if ev.Kv.ModRevision > wr.Revision {
				wr.Revision = ev.Kv.ModRevision
			}
			if ev.Type == clientv3.EventTypeDelete {
				// A deleted directory marker or scratch key is as
				// uninteresting as its creation; a delete carries no value
				// to tell a marker apart, so only the fixed names are
				// filtered here and a delete of "/routes/" passes through
				// (the builder ignores keys that are not objects).
				if hidden(key, nil) {
					continue
				}
				wr.Events = append(wr.Events, store.Event{Type: store.EventDelete,
					KV: store.KV{Key: key, ModRev: ev.Kv.ModRevision}})
				continue
			}
			if hidden(key, ev.Kv.Value) {
				continue
			}
			wr.Events = append(wr.Events, store.Event{Type: store.EventPut, KV: toKV(key, ev.Kv)})
		}
		if len(wr.Events) == 0 {
			continue
		}
		if !send(wr) {
			return
		}
	}
}
