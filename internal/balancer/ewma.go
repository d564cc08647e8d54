package balancer

import (
	"math"
	"math/rand/v2"
	"time"
)

// APISIX's ewma balancer (from ingress-nginx) keeps, per node, an average of
// connect+response time that decays toward zero with a 10 s time constant,
// and picks by "power of two choices": two distinct random untried nodes, the
// one with the lower decayed average wins. Weights are not used beyond
// excluding weight-0 nodes.

func (b *Balancer) nowMs() uint32 {
	return uint32(time.Since(b.base) / time.Millisecond)
}

func unpackEWMA(v uint64) (float64, uint32) {
	return float64(math.Float32frombits(uint32(v >> 32))), uint32(v)
}

func packEWMA(e float64, t uint32) uint64 {
	return uint64(math.Float32bits(float32(e)))<<32 | uint64(t)
}

// decay is exp(-elapsed/ewmaDecay). The uint32 subtraction in the caller
// keeps elapsed right across the 49-day wrap of the millisecond clock.
func decay(elapsedMs uint32) float64 {
	return math.Exp(-float64(elapsedMs) / float64(ewmaDecay/time.Millisecond))
}

// score is the node's average decayed to now, as APISIX scores a candidate
// (an update with a zero sample that is not stored).
func (b *Balancer) score(s *nodeState, now uint32) float64 {
	v := s.ewma.Load()
	if v == 0 {
		return 0
	}
	e, t := unpackEWMA(v)
	return e * decay(now-t)
}

// observe folds a latency sample into the node's average.
func (b *Balancer) observe(s *nodeState, latency time.Duration) {
	rtt := latency.Seconds()
	now := b.nowMs()
	for {
		old := s.ewma.Load()
		e := rtt // the first sample is taken as is
		if old != 0 {
			oe, t := unpackEWMA(old)
			w := decay(now - t)
			e = oe*w + rtt*(1-w)
		}
		nv := packEWMA(e, now)
		if nv == 0 {
			nv = 1 // keep "never sampled" distinct from a zero average
		}
		if s.ewma.CompareAndSwap(old, nv) {
			return
		}
	}
}

// nthUntried returns the k-th member (0-based) that is not tried.
func (b *Balancer) nthUntried(g *group, tried *Tried, k int) int32 {
	if tried.Len() == 0 {
		return g.members[k]
	}
	for _, m := range g.members {
		if tried.Has(&b.nodes[m].Node) {
			continue
		}
		if k == 0 {
			return m
		}
		k--
	}
	return -1
}

func (b *Balancer) pickEWMA(g *group, tried *Tried) int {
	c := len(g.members)
	if tried.Len() > 0 {
		c = 0
		for _, m := range g.members {
			if !tried.Has(&b.nodes[m].Node) {
				c++
			}
		}
	}
	switch c {
	case 0:
		return -1
	case 1:
		return int(b.nthUntried(g, tried, 0))
	}
	x := rand.IntN(c)
	y := rand.IntN(c - 1)
	if y >= x {
		y++
	}
	ix, iy := b.nthUntried(g, tried, x), b.nthUntried(g, tried, y)
	now := b.nowMs()
	if b.score(&b.nodes[ix], now) > b.score(&b.nodes[iy], now) {
		return int(iy)
	}
	return int(ix)
}
