package fast

import (
	"testing"
	"unsafe"
)

// A field line kept at a position is taken from the memo when the same
// bytes come again there (no new string), and not for other bytes or
// another position; empty values and OWS included.
func TestStrCacheLineMemo(t *testing.T) {
	for _, line := range []string{"X-A: one", "X-A:", "X-B:  b ", "Content-Length: 1024"} {
		var sc strCache
		l := []byte(line)
		name, v, ok := splitField(l)
		if !ok {
			t.Fatalf("%q: not a field line", line)
		}
		k := sc.name(3, name)
		val := sc.keepLine(3, l, v)
		if val != string(v) {
			t.Fatalf("%q: kept value %q, want %q", line, val, v)
		}
		k2, v2, hit := sc.field(3, []byte(line)) // the same bytes, another buffer
		if !hit || k2 != k || v2 != val {
			t.Fatalf("%q: memo gave %q %q %v, want %q %q true", line, k2, v2, hit, k, val)
		}
		if len(val) > 0 && unsafe.StringData(v2) != unsafe.StringData(val) {
			t.Fatalf("%q: memo hit made a new string", line)
		}
		if _, _, hit := sc.field(4, l); hit {
			t.Fatalf("%q: memo hit at another position", line)
		}
		if _, _, hit := sc.field(3, []byte(line+"x")); hit {
			t.Fatalf("%q: memo hit for other bytes", line)
		}
	}
}
