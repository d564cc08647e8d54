package all

import (
	"os"
	"path/filepath"
	"testing"
)

// TestEveryPluginIsListedDocumentedAndTested walks internal/plugins/* and
// fails if a plugin folder lacks its entry in Defs, its README.md or a test.
func TestEveryPluginIsListedDocumentedAndTested(t *testing.T) {
	listed := map[string]bool{}
	for _, d := range Defs() {
		if listed[d.Name] {
			t.Errorf("plugin %s listed twice", d.Name)
		}
		listed[d.Name] = true
	}
	dirs, err := os.ReadDir("..")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range dirs {
		name := e.Name()
		// "internal" holds code shared by several plugins
		// (internal/plugins/internal/<pkg>), not a plugin.
		if !e.IsDir() || name == "all" || name == "plugintest" || name == "internal" {
			continue
		}
		if !listed[name] {
			t.Errorf("internal/plugins/%s is not listed in all.Defs", name)
		}
		if _, err := os.Stat(filepath.Join("..", name, "README.md")); err != nil {
			t.Errorf("internal/plugins/%s has no README.md", name)
		}
		tests, _ := filepath.Glob(filepath.Join("..", name, "*_test.go"))
		if len(tests) == 0 {
			t.Errorf("internal/plugins/%s has no tests", name)
		}
		delete(listed, name)
	}
	for name := range listed {
		t.Errorf("plugin %s is listed but has no folder internal/plugins/%s", name, name)
	}
}
