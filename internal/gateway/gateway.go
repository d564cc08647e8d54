package gateway

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/sluice-gw/sluice/internal/admin"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/crypt"
	"github.com/sluice-gw/sluice/internal/engine/fast"
	"github.com/sluice-gw/sluice/internal/engine/std"
	"github.com/sluice-gw/sluice/internal/plugin"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/resolver"
	"github.com/sluice-gw/sluice/internal/resource"
	"github.com/sluice-gw/sluice/internal/store"
	"github.com/sluice-gw/sluice/internal/store/bolt"
	"github.com/sluice-gw/sluice/internal/store/etcd"
	"github.com/sluice-gw/sluice/internal/store/yamlfile"
	"github.com/sluice-gw/sluice/internal/stream"
	"github.com/sluice-gw/sluice/internal/version"
)

// Options configure Run.
type Options struct {
	Config  *config.Config
	Logger  *slog.Logger
	Plugins []*plugin.Def
	// Stdout receives the one-time print of a generated admin key.
	Stdout io.Writer
}

// adminKeyFile is where a generated admin key is kept, inside the data dir.
const adminKeyFile = "admin_key"

// Run starts the gateway and blocks until ctx is cancelled, then shuts
// down: listeners stop accepting, in-flight requests finish within the
// shutdown timeout, and the store is closed cleanly.
func Run(ctx context.Context, opt Options) error {
	cfg, log := opt.Config, opt.Logger
	dataDir := cfg.Sluice.DataDir
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	st, err := openStore(ctx, cfg, log, opt.Plugins)
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	defer func() {
		if err := st.Close(); err != nil {
			log.Error("closing store", "err", err)
		}
	}()

	reg, unknown := plugin.NewRegistry(opt.Plugins, cfg.Plugins)
	if len(unknown) > 0 {
		log.Warn("config.yaml enables plugins Sluice does not have; they are ignored", "plugins", strings.Join(unknown, ", "))
	}
	var keyring *crypt.Keyring
	if cfg.Apisix.DataEncryption.EnableEncryptFields && len(cfg.Apisix.DataEncryption.Keyring) > 0 {
		keyring, err = crypt.NewKeyring(cfg.Apisix.DataEncryption.Keyring)
		if err != nil {
			return fmt.Errorf("apisix.data_encryption.keyring: %w", err)
		}
	}

	runCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	shared := &plugin.Shared{}
	if cfg.Deployment.Role != "control_plane" {
		for _, d := range reg.Enabled() {
			if d.Init == nil {
				continue
			}
			if err := d.Init(runCtx, cfg.PluginAttr[d.Name], shared, log); err != nil {
				return fmt.Errorf("plugin %s: %w", d.Name, err)
			}
		}
	}
	hc := healthEnv{enabled: !cfg.Apisix.DisableUpstreamHealthcheck, ctx: runCtx, logger: log}
	builder := NewBuilder(st, log, compileFunc(cfg.Apisix.Router.HTTP, hc, reg, shared, cfg.PluginAttr), decrypter(keyring, reg))
	builder.releaseIdle = cfg.Sluice.Memory.ReleaseIdle
	// The stream proxy (apisix.stream_proxy) runs in the stream modes, on
	// every role that serves traffic.
	streamMode := strings.Contains(cfg.Apisix.ProxyMode, "stream") && cfg.Deployment.Role != "control_plane"
	if streamMode {
		builder.compileStream = streamCompileFunc(hc, log)
	}
	// sluice.memory.limit: a soft limit for the runtime, unless
	// GOMEMLIMIT already set one; the previous limit comes back when Run
	// returns (tests run several gateways in one process).
	if lim := cfg.Sluice.Memory.Limit; lim > 0 && os.Getenv("GOMEMLIMIT") == "" {
		prevLimit := debug.SetMemoryLimit(lim)
		defer debug.SetMemoryLimit(prevLimit)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); builder.Run(runCtx) }()
	select {
	case <-builder.Ready():
	case <-ctx.Done():
		cancel()
		wg.Wait()
		return nil
	}

	server := version.Server
	if !cfg.Apisix.EnableServerTokens {
		server = "APISIX"
	}
	var servers []*http.Server
	errc := make(chan error, 4)
	serve := func(name string, addr string, h http.Handler) error {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("%s listener: %w", name, err)
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 75 * time.Second, MaxHeaderBytes: 64 << 10}
		servers = append(servers, srv)
		log.Info("listening", "listener", name, "addr", ln.Addr().String())
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		}()
		return nil
	}

	role := cfg.Deployment.Role
	if role != "data_plane" && cfg.Apisix.EnableAdmin {
		keys, err := adminKeys(cfg, dataDir, opt.Stdout)
		if err != nil {
			return err
		}
		var allow []netip.Prefix
		for _, a := range cfg.Deployment.Admin.AllowAdmin {
			p, err := parsePrefix(a)
			if err != nil {
				return fmt.Errorf("deployment.admin.allow_admin: %w", err)
			}
			allow = append(allow, p)
		}
		adm := admin.New(admin.Options{
			Store: st, Plugins: reg, Checker: resource.NewChecker(reg),
			Keys: keys, KeyRequired: cfg.Deployment.Admin.AdminKeyRequired,
			Allow: allow, CORS: cfg.Deployment.Admin.EnableAdminCORS, Server: server,
			Prefix: keyPrefix(cfg), Keyring: keyring,
			StreamMode: strings.Contains(cfg.Apisix.ProxyMode, "stream"),
			Status:     builder.StatusHandler(), Logger: log,
		})
		if err := serve("admin", cfg.Deployment.Admin.AdminListen.Addr(), adm); err != nil {
			return err
		}
	}
	var engines []*std.Server
	var fastEngines []*fast.Server
	var nodeNames *resolver.Resolver // the TTL-caching resolver of node hostnames (HTTP and stream)
	if role != "control_plane" {
		dp := &dataPlane{builder: builder, fwd: proxy.NewForwarder(log), server: server,
			showStatus: cfg.Apisix.ShowUpstreamStatusInResponseHeader, logger: log,
			deleteTailSlash: cfg.Apisix.DeleteURITailSlash,
			realIP:          newRealIP(cfg.NginxConfig.HTTP.RealIPHeader, cfg.NginxConfig.HTTP.RealIPFrom, cfg.NginxConfig.HTTP.RealIPRecursive)}
		if res, err := resolver.New(resolver.Options{Logger: log}); err == nil {
			dp.resolver, nodeNames = res, res
		} else {
			log.Warn("DNS cache disabled; node hostnames resolve per connection", "err", err)
		}
		if len(cfg.Apisix.TrustedAddresses) > 0 {
			var trusted []netip.Prefix
			for _, a := range cfg.Apisix.TrustedAddresses {
				p, err := parsePrefix(a)
				if err != nil {
					return fmt.Errorf("apisix.trusted_addresses: %w", err)
				}
				trusted = append(trusted, p)
			}
			dp.trusted = func(a netip.Addr) bool {
				for _, p := range trusted {
					if p.Contains(a) {
						return true
					}
				}
				return false
			}
		}
		l := cfg.Sluice.Limits
		lim := std.DefaultLimits()
		lim.MaxHeaderBytes, lim.MaxRequestLine, lim.MaxHeaderCount = l.MaxHeaderBytes, l.MaxRequestLine, l.MaxHeaderCount
		lim.ReadHeaderTimeout, lim.IdleTimeout = l.ReadHeaderTimeout, l.IdleTimeout
		lim.MaxBodyBytes, lim.MaxConcurrentStreams = int64(l.MaxBodyBytes), uint32(l.MaxConcurrentStreams)
		lim.Server = server // apisix.enable_server_tokens, as on the Admin API
		eng := std.New(dp, lim, log)
		engines = append(engines, eng)
		// sluice.engine: fast serves HTTP/1.1 on raw sockets; h2 on TLS
		// listeners still goes to eng (docs/engine.md).
		var feng *fast.Server
		if cfg.Sluice.Engine == "fast" {
			feng = fast.New(dp, lim, log, eng)
			dp.fastFwd = fast.NewForwarder(log, dp.fwd)
			fastEngines = append(fastEngines, feng)
		}
		// h2c (node_listen enable_http2) is served by a net/http engine of
		// its own, whichever engine serves plain HTTP/1.1.
		var h2cEng *std.Server
		listen := func(name, addr string, tlsCfg *tls.Config, h2c bool) error {
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("%s listener: %w", name, err)
			}
			log.Info("listening", "listener", name, "addr", ln.Addr().String())
			go func() {
				var err error
				switch {
				case h2c:
					err = h2cEng.Serve(ln)
				case feng != nil && tlsCfg != nil:
					err = feng.ServeTLS(ln, tlsCfg)
				case feng != nil:
					err = feng.Serve(ln)
				case tlsCfg != nil:
					err = eng.ServeTLS(ln, tlsCfg)
				default:
					err = eng.Serve(ln)
				}
				if err != nil && !errors.Is(err, http.ErrServerClosed) {
					errc <- fmt.Errorf("%s: %w", name, err)
				}
			}()
			return nil
		}
		for _, l := range cfg.Apisix.NodeListen {
			if l.HTTP2 && h2cEng == nil {
				h2cEng = std.New(dp, lim, log, std.WithH2C())
				engines = append(engines, h2cEng)
			}
			if err := listen("http", l.Addr(), nil, l.HTTP2); err != nil {
				return err
			}
		}
		if cfg.Apisix.SSL.Enable {
			tc := tlsConfig(builder, cfg.Apisix.SSL.FallbackSNI, cfg.Apisix.EnableHTTP2, cfg.Apisix.SSL.SSLProtocols)
			for _, l := range cfg.Apisix.SSL.Listen {
				if err := listen("https", l.Addr(), tc, false); err != nil {
					return err
				}
			}
		}
	}

	var streamSrv *stream.Server
	if streamMode {
		streamSrv, err = serveStream(cfg, builder, nodeNames, log, errc)
		if err != nil {
			return err
		}
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	log.Info("shutting down")
	sctx, scancel := context.WithTimeout(context.Background(), cfg.Sluice.ShutdownTimeout)
	defer scancel()
	// Stream sessions drain while the HTTP engines shut down, within the
	// same shutdown_timeout.
	streamDone := make(chan struct{})
	go func() {
		defer close(streamDone)
		if streamSrv != nil {
			if err := streamSrv.Shutdown(sctx); err != nil {
				log.Warn("stream proxy shutdown did not finish in time; connections closed", "err", err)
			}
		}
	}()
	defer func() { <-streamDone }()
	for _, e := range fastEngines {
		if err := e.Shutdown(sctx); err != nil {
			log.Warn("fast data plane shutdown did not finish in time", "err", err)
		}
	}
	for _, e := range engines {
		if err := e.Shutdown(sctx); err != nil {
			log.Warn("data plane shutdown did not finish in time", "err", err)
		}
	}
	for _, s := range servers {
		if err := s.Shutdown(sctx); err != nil {
			log.Warn("shutdown did not finish in time; closing connections", "err", err)
			_ = s.Close()
		}
	}
	cancel()
	wg.Wait()
	return runErr
}

// serveStream starts the apisix.stream_proxy listeners. A listener that
// cannot bind fails Run, as an HTTP listener does; one that fails later
// is reported on errc.
func serveStream(cfg *config.Config, builder *Builder, nodeNames *resolver.Resolver, log *slog.Logger, errc chan<- error) (*stream.Server, error) {
	sp := cfg.Apisix.StreamProxy
	if len(sp.TCP) == 0 && len(sp.UDP) == 0 {
		log.Warn("apisix.proxy_mode includes stream but apisix.stream_proxy lists no tcp or udp listener; stream_routes serve nothing")
	}
	var tc *tls.Config
	for _, l := range sp.TCP {
		if l.TLS {
			// Certificates come from the SSL objects by SNI, as on the
			// HTTPS listeners; no ALPN is offered on a byte stream.
			base := tlsConfig(builder, cfg.Apisix.SSL.FallbackSNI, false, cfg.Apisix.SSL.SSLProtocols)
			tc = &tls.Config{MinVersion: base.MinVersion, GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
				c, err := base.GetConfigForClient(h)
				if c != nil {
					c = c.Clone()
					c.NextProtos = nil
				}
				return c, err
			}}
			break
		}
	}
	opt := stream.Options{Logger: log, Table: builder.streamTable, TLS: tc}
	if nodeNames != nil {
		opt.Resolve = nodeNames.Pick
	}
	srv := stream.New(opt)
	report := func(name string, err error) {
		if err != nil && !errors.Is(err, stream.ErrServerClosed) {
			select {
			case errc <- fmt.Errorf("%s: %w", name, err):
			default:
			}
		}
	}
	for _, l := range sp.TCP {
		ln, err := net.Listen("tcp", l.Addr())
		if err != nil {
			_ = srv.Shutdown(context.Background())
			return nil, fmt.Errorf("stream tcp listener: %w", err)
		}
		log.Info("listening", "listener", "stream tcp", "addr", ln.Addr().String(), "tls", l.TLS)
		go func() { report("stream tcp", srv.ServeTCP(ln, l.TLS)) }()
	}
	for _, l := range sp.UDP {
		pc, err := net.ListenPacket("udp", l.Addr())
		if err != nil {
			_ = srv.Shutdown(context.Background())
			return nil, fmt.Errorf("stream udp listener: %w", err)
		}
		log.Info("listening", "listener", "stream udp", "addr", pc.LocalAddr().String())
		go func() { report("stream udp", srv.ServeUDP(pc.(*net.UDPConn))) }()
	}
	return srv, nil
}

// openStore opens the configuration store that
// deployment.role_<role>.config_provider names: the embedded bbolt file in
// the data dir, etcd with deployment.etcd's settings, or the standalone
// conf/apisix.yaml (relative to the working directory, as in APISIX).
func openStore(ctx context.Context, cfg *config.Config, log *slog.Logger, defs []*plugin.Def) (store.Store, error) {
	if cfg.Deployment.ConfigProvider == "yaml" {
		// The file mode is a data plane: Run serves no Admin API for
		// that role, and the store refuses writes anyway. Traditional
		// + yaml is APISIX's standalone API mode, which config.Validate
		// refuses; a hand-built config gets the same answer here.
		if cfg.Deployment.Role != "data_plane" {
			return nil, fmt.Errorf("config_provider yaml needs deployment.role data_plane, got %q", cfg.Deployment.Role)
		}
		// Items are checked against the plugins config.yaml enables, so
		// unknown plugins reject their item as in APISIX.
		reg, _ := plugin.NewRegistry(defs, cfg.Plugins)
		return yamlfile.Open(yamlfile.Options{Path: yamlfile.DefaultPath, Checker: resource.NewChecker(reg), Logger: log})
	}
	if cfg.Deployment.ConfigProvider != "etcd" {
		return bolt.Open(filepath.Join(cfg.Sluice.DataDir, "sluice.db"), bolt.Options{Logger: log})
	}
	e := cfg.Deployment.Etcd
	var tlsCfg *tls.Config
	if e.TLS.Cert != "" || e.TLS.Key != "" || e.TLS.SNI != "" || !e.TLS.Verify {
		c, err := etcd.ClientTLS(e.TLS.Cert, e.TLS.Key, e.TLS.SNI, e.TLS.Verify, "")
		if err != nil {
			return nil, err
		}
		tlsCfg = c
	}
	// deployment.etcd.timeout bounds each request, as in APISIX; the wait
	// for a connection is kept short so that the Admin API answers 503
	// within seconds when etcd is down, whatever the timeout.
	timeout := time.Duration(e.Timeout) * time.Second
	return etcd.Open(ctx, etcd.Options{
		Endpoints: e.Host, Prefix: e.Prefix,
		DialTimeout: min(timeout, 2*time.Second), RequestTimeout: timeout,
		Username: e.User, Password: e.Password, TLS: tlsCfg, Logger: log,
	})
}

// keyPrefix is the prefix the Admin API shows in "key": APISIX reports the
// full etcd key, so a custom deployment.etcd.prefix shows there too.
func keyPrefix(cfg *config.Config) string {
	if cfg.Deployment.ConfigProvider == "etcd" {
		if p := strings.TrimRight(cfg.Deployment.Etcd.Prefix, "/"); p != "" {
			return p
		}
	}
	return "/apisix"
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// adminKeys resolves the admin keys: SLUICE_ADMIN_KEY replaces the admin-role
// keys of config.yaml; config keys with a value are used as they are; if no
// admin-role key has a value, a random key is generated once, stored in the
// data dir with mode 0600 and printed once.
func adminKeys(cfg *config.Config, dataDir string, out io.Writer) ([]admin.Key, error) {
	var keys []admin.Key
	haveAdmin := false
	env := os.Getenv("SLUICE_ADMIN_KEY")
	for _, k := range cfg.Deployment.Admin.AdminKey {
		role := admin.Role(k.Role)
		if role == "" {
			role = admin.RoleAdmin
		}
		if role == admin.RoleAdmin && env != "" {
			continue
		}
		if k.Key == "" {
			continue
		}
		keys = append(keys, admin.Key{Name: k.Name, Key: k.Key, Role: role})
		if role == admin.RoleAdmin {
			haveAdmin = true
		}
	}
	if env != "" {
		return append(keys, admin.Key{Name: "env", Key: env, Role: admin.RoleAdmin}), nil
	}
	if haveAdmin || !cfg.Deployment.Admin.AdminKeyRequired {
		return keys, nil
	}
	path := filepath.Join(dataDir, adminKeyFile)
	if b, err := os.ReadFile(path); err == nil {
		var stored struct{ Key string }
		if json.Unmarshal(b, &stored) == nil && stored.Key != "" {
			return append(keys, admin.Key{Name: "generated", Key: stored.Key, Role: admin.RoleAdmin}), nil
		}
	}
	buf := make([]byte, 16)
	if _, err := rand.Read(buf); err != nil {
		return nil, fmt.Errorf("generate admin key: %w", err)
	}
	key := hex.EncodeToString(buf)
	b, _ := json.Marshal(struct{ Key string }{key})
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return nil, fmt.Errorf("store generated admin key: %w", err)
	}
	if out != nil {
		fmt.Fprintf(out, "No admin key configured; generated one (kept in %s, shown only now):\n  X-API-KEY: %s\n", path, key)
	}
	return append(keys, admin.Key{Name: "generated", Key: key, Role: admin.RoleAdmin}), nil
}

// decrypter returns the snapshot builder's hook that restores encrypted
// SSL keys and plugin fields before decoding.
func decrypter(kr *crypt.Keyring, reg *plugin.Registry) DecryptFunc {
	if kr == nil {
		return nil
	}
	return func(kind *resource.Kind, raw []byte) []byte {
		var m map[string]any
		if json.Unmarshal(raw, &m) != nil {
			return raw
		}
		changed := false
		dec := func(v string) string {
			if strings.HasPrefix(v, "$") || strings.HasPrefix(v, "---") {
				return v
			}
			if p, err := kr.Decrypt(v); err == nil {
				changed = true
				return p
			}
			return v
		}
		if kind.Name == "ssls" {
			if v, ok := m["key"].(string); ok {
				m["key"] = dec(v)
			}
			if ks, ok := m["keys"].([]any); ok {
				for i, x := range ks {
					if v, ok := x.(string); ok {
						ks[i] = dec(v)
					}
				}
			}
		}
		plugins, _ := m["plugins"].(map[string]any)
		for name, conf := range plugins {
			def, ok := reg.Lookup(name)
			cm, isMap := conf.(map[string]any)
			if !ok || !isMap {
				continue
			}
			for _, f := range def.EncryptFields {
				if v, ok := cm[f].(string); ok {
					cm[f] = dec(v)
				}
			}
		}
		if !changed {
			return raw
		}
		b, err := json.Marshal(m)
		if err != nil {
			return raw
		}
		return b
	}
}
