// Command sluice is the Sluice API gateway.
//
//	sluice run [-c conf/config.yaml]    start the gateway
//	sluice validate -c FILE             check a config.yaml
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
	"syscall"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/gateway"
	"github.com/sluice-gw/sluice/internal/plugins/all"
	"github.com/sluice-gw/sluice/internal/version"
)

const usage = `usage:
  sluice run [-c FILE]        start the gateway (default config: conf/config.yaml if present)
  sluice validate -c FILE     check a config.yaml; exits non-zero with file:line errors
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
	path := fs.String("c", "", "config.yaml to check")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	p := configPath(*path)
	if p == "" {
		fmt.Fprintln(stderr, "validate: no config file (use -c FILE)")
		return 2
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
