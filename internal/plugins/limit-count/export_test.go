package limitcount

import "time"

// SweepForTest sweeps p's registry as if the clock read now.
func SweepForTest(p *Plugin, now time.Time) { p.st.reg.Sweep(now.UnixNano()) }

// TablesForTest returns how many counter tables p's registry holds.
func TablesForTest(p *Plugin) int { return p.st.reg.Tables() }
