package balancer

// Tried is the set of nodes a request has already attempted. It lives in the
// request context, so it is sized to avoid allocation for the common case: up
// to eight nodes fit in a fixed array and only larger retry chains spill into
// a slice. The zero value is ready to use and Reset makes it reusable from a
// sync.Pool.
//
// Like APISIX's priority balancer (apisix/balancer/priority.lua), the set
// is per priority level: once every node of a level has been tried, Pick
// moves to the next lower level for good and forgets the nodes tried so
// far (before_retry_next_priority), so a node listed again at a lower
// priority is tried again there.
type Tried struct {
	fixed [8]*Node
	n     int
	extra []*Node
	// capped is set once a level is exhausted; only levels below
	// belowPri remain.
	capped   bool
	belowPri int
}

// Add records that n was attempted. Callers add the node after an attempt and
// before asking Pick for a retry target. Adding a node twice is a no-op.
func (t *Tried) Add(n *Node) {
	if n == nil || t.Has(n) {
		return
	}
	if t.n < len(t.fixed) {
		t.fixed[t.n] = n
		t.n++
		return
	}
	t.extra = append(t.extra, n)
}

// Has reports whether n was attempted. Nodes are compared by pointer first and
// by address second, so a node picked from a previous Balancer generation of
// the same upstream still counts as tried.
func (t *Tried) Has(n *Node) bool {
	if t == nil || n == nil {
		return false
	}
	for _, e := range t.fixed[:t.n] {
		if e == n || e.Addr == n.Addr {
			return true
		}
	}
	for _, e := range t.extra {
		if e == n || e.Addr == n.Addr {
			return true
		}
	}
	return false
}

// Len is the number of distinct nodes recorded.
func (t *Tried) Len() int {
	if t == nil {
		return 0
	}
	return t.n + len(t.extra)
}

// Reset empties the set, keeping any spilled capacity for reuse.
func (t *Tried) Reset() {
	t.clearNodes()
	t.capped, t.belowPri = false, 0
}

func (t *Tried) clearNodes() {
	clear(t.fixed[:t.n])
	t.n = 0
	clear(t.extra)
	t.extra = t.extra[:0]
}

// skips reports whether the priority level was already exhausted.
func (t *Tried) skips(priority int) bool {
	return t != nil && t.capped && priority >= t.belowPri
}

// exhaust records that every node of the priority level was tried: later
// picks only use lower levels, where no node counts as tried yet.
func (t *Tried) exhaust(priority int) {
	if t == nil {
		return
	}
	t.clearNodes()
	t.capped, t.belowPri = true, priority
}
