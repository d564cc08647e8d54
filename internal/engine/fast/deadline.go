package fast

import "time"

// Deadlines are refreshed on every request (idle, send and read timeouts),
// and each SetDeadline updates a runtime timer. The connections remember
// the deadline they set and refresh a long timeout only when it has moved
// by more than its slack: a keep-alive connection serving thousands of
// requests a second updates its idle deadline about once a second.

// slack is how much earlier than asked a refreshed deadline may stay in
// place: a sixteenth of the timeout, at most a second. A timeout of d then
// fires between d-slack(d) and d after the last activity.
func slack(d time.Duration) time.Duration { return min(d/16, time.Second) }

// loose returns now+d and whether it must be set, given the deadline cur
// currently in place (zero: none); it records the new one in cur.
func loose(cur *time.Time, now time.Time, d time.Duration) (time.Time, bool) {
	t := now.Add(d)
	if !cur.IsZero() {
		if gap := t.Sub(*cur); gap >= 0 && gap < slack(d) {
			return t, false
		}
	}
	*cur = t
	return t, true
}

// looseWatch is loose for the deadline after which an upstream read arms
// the client's disconnect watch (watchDelay): arming early costs only a
// watcher wake-up, so a deadline between a quarter of watchDelay and
// watchDelay away stays. With loose's 1/16 slack, a pooled connection
// used every few milliseconds (200 busy clients) moved its deadline, a
// runtime timer update, on nearly every response.
func looseWatch(cur *time.Time, now time.Time) (time.Time, bool) {
	if within(*cur, now, watchDelay) {
		return *cur, false
	}
	*cur = now.Add(watchDelay)
	return *cur, true
}

// within reports whether deadline dl (zero: none) is between d/4 and d
// after now: near enough to its aim of now+d that a deadline whose early
// firing costs only a wake-up can stay (looseWatch, waitReady).
func within(dl, now time.Time, d time.Duration) bool {
	left := dl.Sub(now)
	return !dl.IsZero() && left >= d/4 && left <= d
}

// setReadDeadline sets the client connection's read deadline exactly
// (zero: none) and remembers it.
func (cn *conn) setReadDeadline(t time.Time) {
	cn.rdl = t
	_ = cn.nc.SetReadDeadline(t)
}

// now returns the time the connection last read from the clock within the
// current request, or reads it.
func (cn *conn) now() time.Time {
	if t := cn.clock; !t.IsZero() {
		cn.clock = time.Time{}
		return t
	}
	return time.Now()
}
