package ratelimit

import (
	"testing"
	"time"
)

// TestReserveLeavesRoomForLostGrants: the most a one-minute window can
// hold (the burst plus a minute at the spaced rate) stays under the limit
// by the reserve, so grants a failover loses and grants again do not tip
// a window over it; without a reserve, the window is full.
func TestReserveLeavesRoomForLostGrants(t *testing.T) {
	for _, tt := range []struct {
		perMinute int
		reserve   float64
		lost      int // grants a failover may lose and make again
	}{
		{600, 0.02, 10},
		{120, 0.02, 2},
		{3000, 0.02, 50},
		{600, 0, 0},
	} {
		l := New(nil, Config{Reserve: tt.reserve})
		g := l.gcra(tt.perMinute)
		most := float64(g.Burst) + float64(g.Rate)*float64(time.Minute)/float64(g.Period)
		if most+float64(tt.lost) > float64(tt.perMinute) {
			t.Errorf("%d/min, reserve %.2f: a window holds up to %.1f, plus %d lost grants is over the limit", tt.perMinute, tt.reserve, most, tt.lost)
		}
		if tt.reserve == 0 && most < float64(tt.perMinute)-1 {
			t.Errorf("%d/min without reserve: a window holds up to %.1f; the margin's slack is wasted", tt.perMinute, most)
		}
	}
}
