package all

import (
	"os"
	"strings"
	"testing"
)

// TestPluginsDocListsEveryPlugin keeps docs/plugins.md in step with the
// registry.
func TestPluginsDocListsEveryPlugin(t *testing.T) {
	doc, err := os.ReadFile("../../../docs/plugins.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range Defs() {
		if !strings.Contains(string(doc), "["+d.Name+"](") {
			t.Errorf("docs/plugins.md does not list %s", d.Name)
		}
	}
}
