package redisconn

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/hibiken/asynq"
)

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		url    string
		want   Options
		string string
	}{
		{"redis://127.0.0.1:6379/3", Options{Mode: Single, Addrs: []string{"127.0.0.1:6379"}, DB: 3}, "redis://127.0.0.1:6379/3"},
		{"redis://redis", Options{Mode: Single, Addrs: []string{"redis:6379"}}, "redis://redis:6379/0"},
		{"redis://:s3cret@redis:6380/0", Options{Mode: Single, Addrs: []string{"redis:6380"}, Password: "s3cret"}, "redis://xxxxx@redis:6380/0"},
		{"redis://app:p%40ss@redis:6380", Options{Mode: Single, Addrs: []string{"redis:6380"}, Username: "app", Password: "p@ss"}, "redis://xxxxx@redis:6380/0"},
		{"redis-sentinel://:pw@s1:26379,s2:26379,s3:26379/2?master=mymaster",
			Options{Mode: Sentinel, Addrs: []string{"s1:26379", "s2:26379", "s3:26379"}, MasterName: "mymaster", Password: "pw", DB: 2},
			"redis-sentinel://xxxxx@s1:26379,s2:26379,s3:26379/2?master=mymaster"},
		{"redis-sentinel://s1:26379?master=m", Options{Mode: Sentinel, Addrs: []string{"s1:26379"}, MasterName: "m"}, "redis-sentinel://s1:26379/0?master=m"},
		{"redis-cluster://:pw@n1:7000,n2:7001,n3:7002", Options{Mode: Cluster, Addrs: []string{"n1:7000", "n2:7001", "n3:7002"}, Password: "pw"},
			"redis-cluster://xxxxx@n1:7000,n2:7001,n3:7002"},
		{"redis-cluster://n1:7000/0", Options{Mode: Cluster, Addrs: []string{"n1:7000"}}, "redis-cluster://n1:7000"},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			t.Parallel()
			got, err := Parse(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.IgnoreFields(Options{}, "TLS")); diff != "" {
				t.Errorf("Parse (-want +got):\n%s", diff)
			}
			if s := got.String(); s != tc.string {
				t.Errorf("String() = %q; want %q", s, tc.string)
			}
		})
	}
}

// TestParseErrorsHideThePassword feeds broken URLs that carry a password
// and checks that each is refused with a message that names the problem
// and never quotes the password.
func TestParseErrorsHideThePassword(t *testing.T) {
	t.Parallel()
	const pw = "Sup3rS3cret"
	tests := []struct{ url, want string }{
		{"redis-sentinel://:" + pw + "@s1:26379,s2:26379", "?master=NAME"},
		{"redis-sentinel://:" + pw + "@s1:26379,s2?master=m", `address "s2"`},
		{"redis-sentinel://:" + pw + "@s1:26379?master=m&password=x", `unknown parameter "password"`},
		{"redis://:" + pw + "@a:1,b:2/0", "use redis-sentinel:// for sentinels or redis-cluster://"},
		{"redis://:" + pw + "@a:1/zero", `database "zero"`},
		{"redis://:" + pw + "@a:99999", "want host:port"},
		{"redis-cluster://:" + pw + "@a:1/4", "only database 0"},
		{"http://:" + pw + "@a:1", `unsupported scheme "http"`},
		{":" + pw + "@a:1", "not a URL"},
		{"redis://:" + pw + "/x@a:1/0", ""}, // a "/" in an unescaped password still parses
		{"redis://:" + pw + "@", "no host:port"},
		{"redis://:%zz" + pw + "@a:1", "percent-encoding"},
	}
	for _, tc := range tests {
		o, err := Parse(tc.url)
		if tc.want == "" {
			if err != nil || o.Password != pw+"/x" {
				t.Errorf("Parse: %+v, %v; want the password %q", o, err, pw+"/x")
			}
			continue
		}
		if err == nil {
			t.Errorf("Parse accepted a broken URL: %+v", o)
			continue
		}
		if strings.Contains(err.Error(), pw) {
			t.Errorf("error quotes the password: %v", err)
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %q does not say %q", err, tc.want)
		}
	}
}

func TestAsynqOption(t *testing.T) {
	t.Parallel()
	o, err := Parse("redis-sentinel://:pw@s1:26379,s2:26379/4?master=mymaster")
	if err != nil {
		t.Fatal(err)
	}
	want := asynq.RedisFailoverClientOpt{MasterName: "mymaster", SentinelAddrs: []string{"s1:26379", "s2:26379"},
		SentinelPassword: "pw", Password: "pw", DB: 4}
	if diff := cmp.Diff(want, o.Asynq()); diff != "" {
		t.Errorf("Asynq (-want +got):\n%s", diff)
	}
	// The same URL means the same thing to asynq, apart from the master's
	// password and database, which asynq's parser drops.
	a, err := asynq.ParseRedisURI("redis-sentinel://:pw@s1:26379,s2:26379?master=mymaster")
	if err != nil {
		t.Fatal(err)
	}
	fo := a.(asynq.RedisFailoverClientOpt)
	if fo.MasterName != want.MasterName || !cmp.Equal(fo.SentinelAddrs, want.SentinelAddrs) || fo.SentinelPassword != want.SentinelPassword {
		t.Errorf("asynq reads the URL as %+v; redisconn as %+v", fo, want)
	}
	c, err := Parse("redis-cluster://n1:7000,n2:7001")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Asynq().(asynq.RedisClusterClientOpt); !ok {
		t.Errorf("cluster URL gives %T", c.Asynq())
	}
	if _, err := c.WithDB(3); err == nil {
		t.Error("WithDB(3) on a cluster succeeded")
	}
}
