package e2e

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestKill9Durability writes routes from concurrent clients through the
// Admin API, SIGKILLs the gateway mid-stream, restarts it in the same
// directory and checks that every write acknowledged with 2xx survived.
func TestKill9Durability(t *testing.T) {
	dir := newDir(t)
	a, h := freePort(t), freePort(t)
	for round := 0; round < 2; round++ {
		g := start(t, dir, a, h, defaultConfig(a, h, ""))
		var mu sync.Mutex
		var acked []string
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := 0; w < 6; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					id := fmt.Sprintf("r%d-%d-%d", round, w, i)
					body := fmt.Sprintf(`{"uri":"/%s","upstream":{"nodes":{"127.0.0.1:1980":1}}}`, id)
					r, err := tryAdmin(g, "PUT", "/apisix/admin/routes/"+id, body)
					if err != nil {
						return // the process is gone
					}
					if r.Status == 201 || r.Status == 200 {
						mu.Lock()
						acked = append(acked, id)
						mu.Unlock()
					}
				}
			}(w)
		}
		time.Sleep(time.Duration(400+round*300) * time.Millisecond)
		g.kill()
		close(stop)
		wg.Wait()
		if len(acked) == 0 {
			t.Fatal("no write was acknowledged before the kill")
		}
		g2 := start(t, dir, a, h, defaultConfig(a, h, ""))
		for _, id := range acked {
			if r := g2.admin("GET", "/apisix/admin/routes/"+id, ""); r.Status != 200 {
				t.Fatalf("round %d: acknowledged route %s lost after kill -9 (%d)", round, id, r.Status)
			}
		}
		t.Logf("round %d: %d acknowledged writes all present after kill -9", round, len(acked))
		g2.stop()
	}
}
