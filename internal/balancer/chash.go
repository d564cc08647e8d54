package balancer

import (
	"encoding/binary"
	"hash/crc32"
	"slices"
	"strings"
	"unsafe"
)

// APISIX's chash is lua-resty-balancer's resty.chash, a ketama-style ring:
//
//   - weights are divided by their gcd (apisix/balancer/chash.lua), and each
//     weight unit gives a node 160 points;
//   - a node's id is its "host:port" with every ':' replaced by NUL;
//   - point i of a node is crc32 continued from crc32(id) over the
//     little-endian bytes of point i-1 (0 for the first point);
//   - a key maps to the first point whose hash is >= crc32(key), wrapping to
//     the first point; a retry walks on to the following points, skipping
//     nodes already tried.
//
// Reproducing the layout exactly means a key lands on the same node as it
// does in APISIX for the same node set. Unhealthy nodes are left out of the
// ring, which maps their keys exactly as skipping their points would.

// chashPoints is resty.chash's CONSISTENT_POINTS.
const chashPoints = 160

type ringPoint struct {
	hash uint32
	node int32
}

func (b *Balancer) newRing(members []int32) []ringPoint {
	g := 0
	for _, m := range members {
		g = gcd(g, b.nodes[m].Weight)
	}
	if g == 0 {
		return nil
	}
	total := 0
	for _, m := range members {
		total += b.nodes[m].Weight / g * chashPoints
	}
	ring := make([]ringPoint, 0, total)
	var prev [4]byte
	for _, m := range members {
		id := strings.ReplaceAll(b.nodes[m].Addr, ":", "\x00")
		base := crc32.ChecksumIEEE([]byte(id))
		clear(prev[:])
		for range b.nodes[m].Weight / g * chashPoints {
			h := crc32.Update(base, crc32.IEEETable, prev[:])
			ring = append(ring, ringPoint{hash: h, node: m})
			binary.LittleEndian.PutUint32(prev[:], h)
		}
	}
	slices.SortStableFunc(ring, func(x, y ringPoint) int {
		switch {
		case x.hash < y.hash:
			return -1
		case x.hash > y.hash:
			return 1
		}
		return 0
	})
	return ring
}

// chashKey hashes a key without copying it to a []byte.
func chashKey(key string) uint32 {
	return crc32.ChecksumIEEE(unsafe.Slice(unsafe.StringData(key), len(key)))
}

func (b *Balancer) pickCHash(g *group, tried *Tried, key string) int {
	ring := g.ring
	n := len(ring)
	if n == 0 {
		return -1
	}
	h := chashKey(key)
	lo, hi := 0, n
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if ring[mid].hash < h {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo == n {
		lo = 0
	}
	idx := ring[lo].node
	if tried.Len() == 0 || !tried.Has(&b.nodes[idx].Node) {
		return int(idx)
	}
	for k := 1; k < n; k++ {
		idx = ring[(lo+k)%n].node
		if !tried.Has(&b.nodes[idx].Node) {
			return int(idx)
		}
	}
	return -1
}
