package router

import "bytes"

// tnode is a node of a compressed (radix) trie over bytes. Children are found
// by their first byte through bytes.IndexByte on first, which is fast for the
// small fan-outs real route sets have and stays correct for large ones.
type tnode[T any] struct {
	label string
	first []byte
	kids  []*tnode[T]
	val   T
	has   bool // a key ends at this node
}

// trie maps string keys to values and finds every key that is a prefix of a
// given string in one pass along it, so its cost depends on the length of the
// request path (or host), not on how many keys there are.
type trie[T any] struct {
	root *tnode[T]
}

// node returns the node for key, creating it (and splitting edges) as needed,
// and marks it as holding a key.
func (t *trie[T]) node(key string) *tnode[T] {
	if t.root == nil {
		t.root = &tnode[T]{}
	}
	n := t.root
	for {
		if key == "" {
			n.has = true
			return n
		}
		i := bytes.IndexByte(n.first, key[0])
		if i < 0 {
			c := &tnode[T]{label: key, has: true}
			n.first = append(n.first, key[0])
			n.kids = append(n.kids, c)
			return c
		}
		c := n.kids[i]
		l := commonPrefix(c.label, key)
		if l == len(c.label) {
			key = key[l:]
			n = c
			continue
		}
		mid := &tnode[T]{label: c.label[:l], first: []byte{c.label[l]}, kids: []*tnode[T]{c}}
		c.label = c.label[l:]
		n.kids[i] = mid
		key = key[l:]
		n = mid
	}
}

func commonPrefix(a, b string) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

// walk appends to out every node whose key is a prefix of s, shortest first.
func (t *trie[T]) walk(s string, out []*tnode[T]) []*tnode[T] {
	n := t.root
	if n == nil {
		return out
	}
	for {
		if n.has {
			out = append(out, n)
		}
		if s == "" {
			return out
		}
		c := n.child(s[0])
		if c == nil {
			return out
		}
		l := c.label
		if len(s) < len(l) {
			return out
		}
		// The first byte already matched through the child index.
		if len(l) <= 16 {
			for k := 1; k < len(l); k++ {
				if s[k] != l[k] {
					return out
				}
			}
		} else if s[:len(l)] != l {
			return out
		}
		s = s[len(l):]
		n = c
	}
}

// child returns the child whose label starts with b, or nil. A plain loop
// beats the call into bytes.IndexByte for the few children most nodes have.
func (n *tnode[T]) child(b byte) *tnode[T] {
	f := n.first
	if len(f) <= 16 {
		for i := range f {
			if f[i] == b {
				return n.kids[i]
			}
		}
		return nil
	}
	if i := bytes.IndexByte(f, b); i >= 0 {
		return n.kids[i]
	}
	return nil
}

// walkRev is walk for a trie whose keys were inserted reversed: it reads s
// from its end, so it finds every stored suffix of s, shortest first.
func (t *trie[T]) walkRev(s string, out []*tnode[T]) []*tnode[T] {
	n := t.root
	if n == nil {
		return out
	}
	end := len(s)
	for {
		if n.has {
			out = append(out, n)
		}
		if end == 0 {
			return out
		}
		c := n.child(s[end-1])
		if c == nil {
			return out
		}
		if end < len(c.label) {
			return out
		}
		for k := 0; k < len(c.label); k++ {
			if s[end-1-k] != c.label[k] {
				return out
			}
		}
		end -= len(c.label)
		n = c
	}
}

func reverse(s string) string {
	b := []byte(s)
	for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
	return string(b)
}
