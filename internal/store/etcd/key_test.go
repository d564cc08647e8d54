package etcd

import (
	"strings"
	"testing"
)

// FuzzKeyMapping checks that every valid store key maps to an etcd key
// under the prefix and back to itself, and that keys of a sibling prefix
// ("/apisix2/...") never map into "/apisix".
func FuzzKeyMapping(f *testing.F) {
	for _, k := range []string{"/routes/1", "/consumers/jack/credentials/a", "/", "/gen_id", "/routes/", "2/routes/1"} {
		f.Add(k)
	}
	s := &Store{prefix: "/apisix"}
	f.Fuzz(func(t *testing.T, key string) {
		if validateKey(key) != nil {
			if _, ok := s.storeKey([]byte("/apisix" + key)); ok && !strings.HasPrefix(key, "/") {
				t.Fatalf("etcd key %q outside the prefix mapped into it", "/apisix"+key)
			}
			return
		}
		back, ok := s.storeKey([]byte(s.etcdKey(key)))
		if !ok || back != key {
			t.Fatalf("%q -> %q -> %q, %v", key, s.etcdKey(key), back, ok)
		}
	})
}

func TestHidden(t *testing.T) {
	for _, tc := range []struct {
		key, value string
		want       bool
	}{
		{"/routes/", "init_dir", true},
		{"/routes/", `{"uri":"/"}`, false},
		{"/gen_id", "1", true},
		{"/plugins", "[]", true},
		{"/data_plane/server_info/x", "{}", true},
		{"/routes/1", "init_dir", false},
		{"/routes/1", "{}", false},
	} {
		if got := hidden(tc.key, []byte(tc.value)); got != tc.want {
			t.Errorf("hidden(%q, %q) = %v, want %v", tc.key, tc.value, got, tc.want)
		}
	}
}
