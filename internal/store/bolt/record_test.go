package bolt

import (
	"bytes"
	"testing"
)

// FuzzRecord checks that decoding arbitrary on-disk bytes never panics and
// that encode/decode round-trips.
func FuzzRecord(f *testing.F) {
	f.Add([]byte{}, int64(1), int64(2), int64(0), []byte(`{"uri":"/"}`))
	f.Add(encodeRecord(record{createRev: 5, modRev: 9, expireAt: 1}, []byte("v")), int64(-1), int64(0), int64(1<<62), []byte{})
	f.Fuzz(func(t *testing.T, raw []byte, c, m, e int64, val []byte) {
		_, _, _ = decodeRecord(raw)
		want := record{createRev: c, modRev: m, expireAt: e}
		got, v, err := decodeRecord(encodeRecord(want, val))
		if err != nil || got != want || !bytes.Equal(v, val) {
			t.Fatalf("round trip: %+v %q %v, want %+v %q", got, v, err, want, val)
		}
	})
}

func TestValidateKey(t *testing.T) {
	tests := []struct {
		key string
		ok  bool
	}{
		{"/routes/1", true},
		{"/consumers/jack/credentials/c1", true},
		{"x", true},
		{"", false},
		{"/a\x00", false},
		{string(make([]byte, 32769)), false},
	}
	for _, tc := range tests {
		t.Run(tc.key[:min(len(tc.key), 20)], func(t *testing.T) {
			if err := validateKey(tc.key); (err == nil) != tc.ok {
				t.Errorf("validateKey(%.20q) = %v, want ok=%v", tc.key, err, tc.ok)
			}
		})
	}
}
