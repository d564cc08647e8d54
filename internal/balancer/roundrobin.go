package balancer

// APISIX's roundrobin is lua-resty-balancer's resty.roundrobin: interleaved
// weighted round robin (the LVS algorithm, not nginx's smooth variant). It
// keeps a current weight cw that starts at the highest weight and, on each
// pass over the nodes, hands out every node whose weight is >= cw, then lowers
// cw by the gcd of all weights, wrapping back to the maximum. With weights
// {3,2,1} the cycle is A A B A B C.
//
// The Lua version iterates a hash table from a random starting node; we walk
// the nodes in configuration order from the first, which makes the order
// deterministic. Instead of mutating cw and a cursor under a lock, the cycle
// is precomputed as segments and a shared atomic counter indexes into it: the
// pick is one atomic add, a modulo and a short segment search.

// rrSeg is a run of levels (cw values) that hand out the same nodes: levels
// from one distinct weight down to just above the next lower distinct weight.
type rrSeg struct {
	start uint64 // position of the segment's first pick within the cycle
	count uint32 // nodes handed out per level
	off   uint32 // offset of those nodes in rrPlan.list
}

// rrPlan is the precomputed interleaved cycle for one priority group.
type rrPlan struct {
	period uint64 // cycle length: sum of weight/gcd
	segs   []rrSeg
	list   []int32 // node indexes, per segment in config order
	heavy  []int32 // members by descending weight, for the retry fallback
}

func (b *Balancer) newRRPlan(members []int32) rrPlan {
	var p rrPlan
	if len(members) == 0 {
		return p
	}
	g := 0
	for _, m := range members {
		g = gcd(g, b.nodes[m].Weight)
	}
	units := func(m int32) uint64 { return uint64(b.nodes[m].Weight / g) }
	// Distinct unit weights, descending.
	var levels []uint64
	for _, m := range members {
		u := units(m)
		found := false
		for _, l := range levels {
			if l == u {
				found = true
				break
			}
		}
		if !found {
			levels = append(levels, u)
		}
	}
	sortDesc(levels)
	var start uint64
	for j, d := range levels {
		next := uint64(0)
		if j+1 < len(levels) {
			next = levels[j+1]
		}
		off := len(p.list)
		for _, m := range members {
			if units(m) >= d {
				p.list = append(p.list, m)
			}
		}
		count := len(p.list) - off
		p.segs = append(p.segs, rrSeg{start: start, count: uint32(count), off: uint32(off)})
		start += (d - next) * uint64(count)
	}
	p.period = start
	p.heavy = append([]int32(nil), members...)
	for i := 1; i < len(p.heavy); i++ { // insertion sort, stable, by weight desc
		for k := i; k > 0 && b.nodes[p.heavy[k]].Weight > b.nodes[p.heavy[k-1]].Weight; k-- {
			p.heavy[k], p.heavy[k-1] = p.heavy[k-1], p.heavy[k]
		}
	}
	return p
}

func sortDesc(s []uint64) {
	for i := 1; i < len(s); i++ {
		for k := i; k > 0 && s[k] > s[k-1]; k-- {
			s[k], s[k-1] = s[k-1], s[k]
		}
	}
}

// at returns the node at position pos (< period) of the cycle.
func (p *rrPlan) at(pos uint64) int32 {
	segs := p.segs
	j := 0
	if len(segs) <= 8 {
		for j+1 < len(segs) && segs[j+1].start <= pos {
			j++
		}
	} else {
		lo, hi := 0, len(segs)-1
		for lo < hi {
			mid := (lo + hi + 1) / 2
			if segs[mid].start <= pos {
				lo = mid
			} else {
				hi = mid - 1
			}
		}
		j = lo
	}
	s := segs[j]
	return p.list[uint64(s.off)+(pos-s.start)%uint64(s.count)]
}

// pickRoundRobin takes the next position of the shared cycle. On a retry it
// walks forward from there past tried nodes, as APISIX calls find() until it
// gets an untried node; a walk is bounded, and if the cycle is long and
// dominated by tried nodes it falls back to the heaviest untried node.
func (b *Balancer) pickRoundRobin(g *group, tried *Tried) int {
	p := &g.rr
	if p.period == 0 {
		return -1
	}
	pos := (g.next.Add(1) - 1) % p.period
	idx := p.at(pos)
	if tried.Len() == 0 || !tried.Has(&b.nodes[idx].Node) {
		return int(idx)
	}
	limit := min(p.period, uint64(2*len(g.members)+64))
	for k := uint64(1); k < limit; k++ {
		idx = p.at((pos + k) % p.period)
		if !tried.Has(&b.nodes[idx].Node) {
			return int(idx)
		}
	}
	for _, m := range p.heavy {
		if !tried.Has(&b.nodes[m].Node) {
			return int(m)
		}
	}
	return -1
}
