package gateway

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/plugins/all"
)

func freeAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestMemProbe10k runs the whole gateway (bbolt store, Admin API, builder,
// data plane) in-process, creates 10,000 routes through the Admin API as
// bench/run.sh profile d does and reports the heap. Manual: set
// SLUICE_MEMPROBE=1 (and SLUICE_MEMPROFILE=file for a heap profile).
func TestMemProbe10k(t *testing.T) {
	if os.Getenv("SLUICE_MEMPROBE") == "" {
		t.Skip("set SLUICE_MEMPROBE=1")
	}
	if os.Getenv("SLUICE_MEMPROFILE") != "" {
		runtime.MemProfileRate = 2048
	}
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer origin.Close()
	cfg := config.Default()
	cfg.Sluice.DataDir = t.TempDir()
	httpAddr, adminAddr := freeAddr(t), freeAddr(t)
	var hp, ap int
	fmt.Sscanf(httpAddr[strings.LastIndexByte(httpAddr, ':')+1:], "%d", &hp)
	fmt.Sscanf(adminAddr[strings.LastIndexByte(adminAddr, ':')+1:], "%d", &ap)
	cfg.Apisix.NodeListen = []config.Listen{{IP: "127.0.0.1", Port: hp}}
	cfg.Apisix.SSL.Enable = false
	cfg.Deployment.Admin.AdminListen = config.Listen{IP: "127.0.0.1", Port: ap}
	cfg.Deployment.Admin.AdminKey = []config.AdminKey{{Name: "admin", Key: "k", Role: "admin"}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, Options{Config: cfg, Logger: quietLogger(), Plugins: all.Defs()}) }()
	defer func() { cancel(); <-done }()
	admin := "http://" + adminAddr + "/apisix/admin/"
	cl := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
	put := func(path, body string) {
		req, _ := http.NewRequest("PUT", admin+path, strings.NewReader(body))
		req.Header.Set("X-API-KEY", "k")
		resp, err := cl.Do(req)
		if err != nil {
			t.Error(err)
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Errorf("PUT %s: %d", path, resp.StatusCode)
		}
	}
	for i := 0; ; i++ {
		if resp, err := http.Get(admin + "routes"); err == nil {
			resp.Body.Close()
			break
		}
		if i > 100 {
			t.Fatal("admin not up")
		}
		time.Sleep(50 * time.Millisecond)
	}
	ms := func(label string) uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		t.Logf("%s: HeapAlloc %.1f MiB, HeapInuse %.1f MiB, HeapSys %.1f MiB, HeapReleased %.1f MiB, Sys %.1f MiB, NumGC %d, TotalAlloc %.0f MiB",
			label, float64(m.HeapAlloc)/(1<<20), float64(m.HeapInuse)/(1<<20), float64(m.HeapSys)/(1<<20), float64(m.HeapReleased)/(1<<20), float64(m.Sys)/(1<<20), m.NumGC, float64(m.TotalAlloc)/(1<<20))
		return m.HeapAlloc
	}
	put("upstreams/1", `{"type":"roundrobin","nodes":{"`+strings.TrimPrefix(origin.URL, "http://")+`":1}}`)
	base := ms("before routes")
	const n = 10000
	var wg sync.WaitGroup
	ids := make(chan int)
	start := time.Now()
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ids {
				put(fmt.Sprint("routes/", i), fmt.Sprintf(`{"uri":"/r/%d","upstream_id":"1"}`, i))
			}
		}()
	}
	for i := 1; i <= n; i++ {
		ids <- i
	}
	close(ids)
	wg.Wait()
	t.Logf("PUTs took %s", time.Since(start))
	for i := 0; ; i++ {
		resp, err := http.Get(fmt.Sprintf("http://%s/r/%d", httpAddr, n))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if i > 200 {
			t.Fatal("last route not served")
		}
		time.Sleep(20 * time.Millisecond)
	}
	var hwm runtime.MemStats
	runtime.ReadMemStats(&hwm)
	t.Logf("right after: HeapSys %.1f MiB (high-water of heap span memory)", float64(hwm.HeapSys)/(1<<20))
	after := ms("after routes")
	t.Logf("live heap per route: %.0f bytes", float64(after-base)/n)
	if f := os.Getenv("SLUICE_MEMPROFILE"); f != "" {
		fh, err := os.Create(f)
		if err != nil {
			t.Fatal(err)
		}
		pprof.WriteHeapProfile(fh)
		fh.Close()
	}
}
