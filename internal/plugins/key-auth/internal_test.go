package keyauth

import (
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/plugin"
)

func TestKeyEqual(t *testing.T) {
	cred := &plugin.Credential{Data: &credential{key: "auth-one"}}
	tests := []struct {
		key  string
		want bool
	}{{"auth-one", true}, {"auth-onf", false}, {"auth-on", false}, {"", false}, {strings.Repeat("a", 10<<10), false}}
	for _, tc := range tests {
		if got := keyEqual(cred, tc.key); got != tc.want {
			t.Errorf("keyEqual(%q) = %v", tc.key, got)
		}
	}
	if keyEqual(&plugin.Credential{Data: "wrong type"}, "auth-one") {
		t.Error("foreign credential data accepted")
	}
}
