package bolt

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/sluice-gw/sluice/internal/store"
)

// Environment variables that turn TestHelperWriter into the child process
// of TestDurabilityKill9.
const (
	envDurPath  = "SLUICE_BOLT_DURABILITY_PATH"
	envDurRound = "SLUICE_BOLT_DURABILITY_ROUND"
)

// TestHelperWriter is not a test on its own: TestDurabilityKill9 runs the
// test binary again with only this test selected and the environment set,
// and it then writes until it is killed, printing one line per
// acknowledged Put.
func TestHelperWriter(t *testing.T) {
	path := os.Getenv(envDurPath)
	if path == "" {
		t.Skip("helper process for TestDurabilityKill9")
	}
	round := os.Getenv(envDurRound)
	s, err := Open(path, Options{})
	if err != nil {
		fmt.Fprintf(os.Stderr, "open: %v\n", err)
		os.Exit(2)
	}
	var mu sync.Mutex
	ack := func(kind, key string, rev int64, val string) {
		mu.Lock()
		defer mu.Unlock()
		// One write per line; a line is only complete once Put returned.
		fmt.Fprintf(os.Stdout, "ACK %s %s %d %s\n", kind, key, rev, val)
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), uint64(len(round))))
			for i := 0; ; i++ {
				key := fmt.Sprintf("/dur/%s/%d/%d", round, g, i)
				// Values of varied size exercise page splits and overflow pages.
				val := fmt.Sprintf("v%d-%s", i, strings.Repeat("x", rng.IntN(3000)))
				kv, _, err := s.Put(ctx, key, []byte(val), store.PutOptions{})
				if err != nil {
					fmt.Fprintf(os.Stderr, "put: %v\n", err)
					os.Exit(3)
				}
				ack("put", key, kv.ModRev, val)
				// An overwritten key: after a crash it must hold the last
				// acknowledged counter or a later one, never an older one.
				last := fmt.Sprintf("/dur/last/%s/%d", round, g)
				kv, _, err = s.Put(ctx, last, []byte(strconv.Itoa(i)), store.PutOptions{})
				if err != nil {
					fmt.Fprintf(os.Stderr, "put: %v\n", err)
					os.Exit(3)
				}
				ack("last", last, kv.ModRev, strconv.Itoa(i))
			}
		})
	}
	wg.Wait()
}

func TestDurabilityKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	path := filepath.Join(t.TempDir(), "dur", "sluice.db")
	const rounds = 5
	puts := map[string]string{}
	lastAck := map[string]int{}
	var maxRev int64
	for round := range rounds {
		target := 1 + rand.IntN(2000)
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperWriter$", "-test.count=1")
		cmd.Env = append(os.Environ(), envDurPath+"="+path, envDurRound+"="+strconv.Itoa(round))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(out)
		acked := 0
		killed := false
		kill := func() { _ = cmd.Process.Signal(syscall.SIGKILL) }
		// A busy machine can make the child slow to start; give it time to
		// acknowledge something, then at most 2s more to reach the target.
		hard := time.AfterFunc(20*time.Second, kill)
		var soft *time.Timer
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				// A partial final line was never acknowledged.
				if err != io.EOF {
					t.Fatalf("read child: %v", err)
				}
				break
			}
			f := strings.SplitN(strings.TrimSuffix(line, "\n"), " ", 5)
			if len(f) != 5 || f[0] != "ACK" {
				continue // test framework chatter
			}
			rev, _ := strconv.ParseInt(f[3], 10, 64)
			maxRev = max(maxRev, rev)
			switch f[1] {
			case "put":
				puts[f[2]] = f[4]
			case "last":
				n, _ := strconv.Atoi(f[4])
				lastAck[f[2]] = max(lastAck[f[2]], n)
			}
			acked++
			if acked == 1 {
				soft = time.AfterFunc(2*time.Second, kill)
			}
			if acked == target && !killed {
				killed = true
				_ = cmd.Process.Signal(syscall.SIGKILL)
			}
		}
		hard.Stop()
		if soft != nil {
			soft.Stop()
		}
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("round %d: child was not killed (err %v): %s", round, err, stderr.String())
		}
		t.Logf("round %d: killed after %d acks (target %d), %d keys so far", round, acked, target, len(puts))
		if acked == 0 {
			t.Fatalf("round %d: child acknowledged nothing: %s", round, stderr.String())
		}

		// First the raw file: it must open and pass bbolt's own page and
		// freelist consistency check. This runs before the Store opens so
		// that no writer (the reaper) runs alongside the check.
		db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: 5 * time.Second})
		if err != nil {
			t.Fatalf("round %d: raw reopen after kill: %v", round, err)
		}
		var checkErrs []error
		_ = db.View(func(tx *bbolt.Tx) error {
			for err := range tx.Check() {
				checkErrs = append(checkErrs, err)
			}
			return nil
		})
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		if len(checkErrs) > 0 {
			t.Fatalf("round %d: bbolt consistency check: %v", round, checkErrs)
		}

		s, err := Open(path, Options{LockTimeout: 5 * time.Second})
		if err != nil {
			t.Fatalf("round %d: reopen after kill: %v", round, err)
		}
		ctx := context.Background()
		kvs, rev, err := s.List(ctx, "/dur/")
		if err != nil {
			t.Fatal(err)
		}
		if rev < maxRev {
			t.Errorf("round %d: revision %d behind acknowledged %d", round, rev, maxRev)
		}
		have := make(map[string]string, len(kvs))
		for _, kv := range kvs {
			have[kv.Key] = string(kv.Value)
		}
		missing := 0
		for k, v := range puts {
			if got, ok := have[k]; !ok || got != v {
				missing++
				if missing <= 5 {
					t.Errorf("round %d: acknowledged %s lost or wrong (present %v, len %d want %d)", round, k, ok, len(got), len(v))
				}
			}
		}
		for k, n := range lastAck {
			got, err := strconv.Atoi(have[k])
			if err != nil || got < n {
				t.Errorf("round %d: %s = %q, acknowledged %d", round, k, have[k], n)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if t.Failed() {
			t.FailNow()
		}
	}
}
