// Command sluice is the Sluice API gateway.
//
//	sluice run [-c conf/config.yaml]    start the gateway
//	sluice validate -c FILE             check a config.yaml or an apisix.yaml
//	sluice version                      print the version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/gateway"
	"github.com/sluice-gw/sluice/internal/plugin"
	"github.com/sluice-gw/sluice/internal/plugins/all"
	"github.com/sluice-gw/sluice/internal/resource"
	"github.com/sluice-gw/sluice/internal/store/yamlfile"
	"github.com/sluice-gw/sluice/internal/version"
)

const usage = `usage:
  sluice run [-c FILE]        start the gateway (default config: conf/config.yaml if present)
  sluice validate -c FILE     check a config.yaml or a standalone apisix.yaml;
                              exits non-zero with file:line errors
  sluice version              print the version
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "version", "-v", "--version":
		fmt.Fprintf(stdout, "sluice %s (APISIX %s compatible)\n", version.Version, version.APISIXVersion)
		return 0
	case "validate":
		return validate(args[1:], stdout, stderr)
	case "run", "start":
		return serve(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "unknown command %q\n%s", args[0], usage)
	return 2
}

// configPath applies the default: conf/config.yaml when it exists, else
// built-in defaults ("").
func configPath(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	if _, err := os.Stat("conf/config.yaml"); err == nil {
		return "conf/config.yaml"
	}
	return ""
}

func validate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", "", "config.yaml or apisix.yaml to check")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *path == "" && fs.NArg() > 0 {
		*path = fs.Arg(0)
	}
	p := configPath(*path)
	if p == "" {
		fmt.Fprintln(stderr, "validate: no config file (use -c FILE)")
		return 2
	}
	if data, err := os.ReadFile(p); err == nil && isApisixYAML(p, data) {
		return validateApisixYAML(p, data, stdout, stderr)
	}
	_, warns, err := config.Load(p)
	for _, w := range warns {
		fmt.Fprintln(stderr, "warning: "+w.String())
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok\n", p)
	return 0
}

// isApisixYAML tells a standalone apisix.yaml from a config.yaml by its
// name or, failing that, by its content (resource sections at the top
// level or the "#END" marker).
func isApisixYAML(path string, data []byte) bool {
	base := filepath.Base(path)
	if base == "apisix.yaml" || base == "apisix.yml" {
		return true
	}
	return yamlfile.LooksLikeApisixYAML(data)
}

// validateApisixYAML checks an apisix.yaml with the code the standalone
// store loads it with. Plugins are those conf/config.yaml enables when it
// is there and loads, else every built-in plugin.
func validateApisixYAML(p string, data []byte, stdout, stderr io.Writer) int {
	var enabled []string
	if cp := configPath(""); cp != "" {
		if cfg, _, err := config.Load(cp); err == nil {
			enabled = cfg.Plugins
		}
	}
	reg, _ := plugin.NewRegistry(all.Defs(), enabled)
	cfg, err := yamlfile.Parse(data, p, resource.NewChecker(reg))
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	for _, pr := range cfg.Problems {
		fmt.Fprintln(stderr, pr.Error())
	}
	if len(cfg.Problems) > 0 {
		fmt.Fprintf(stderr, "%s: %d problem(s); the items above would be skipped\n", p, len(cfg.Problems))
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok (%d items)\n", p, len(cfg.Items))
	return 0
}

func serve(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", "", "config.yaml (default conf/config.yaml if present)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, warns, err := config.Load(configPath(*path))
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	level := slog.LevelInfo
	_ = level.UnmarshalText([]byte(cfg.Sluice.LogLevel))
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	for _, w := range warns {
		log.Warn(w.String())
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log.Info("starting sluice", "version", version.Version, "config", cfg.Path)
	err = gateway.Run(ctx, gateway.Options{Config: cfg, Logger: log, Plugins: all.Defs(), Stdout: stdout})
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Error("sluice stopped", "err", err)
		return 1
	}
	return 0
}
