// Package redisconn turns LIKENESS_REDIS_URL into Redis connections: the
// asynq connection option the producer, workers and inspectors share, and
// the go-redis client that run state (pkg/runstate) and fleet limits
// (pkg/ratelimit) use. Every process in the task lifecycle parses the same
// URL here, so they all reach the same Redis however it is deployed:
//
//	redis://[[user]:password@]host:port[/db]          one server
//	rediss://...                                        the same over TLS
//	redis-sentinel://[[user]:password@]host:port[,host:port...][/db]?master=NAME
//	                                                    Sentinel: the sentinels' addresses
//	redis-cluster://[[user]:password@]host:port[,host:port...]
//	                                                    Redis Cluster: some of its nodes
//
// The redis-sentinel form is asynq's (asynq.ParseRedisURI). Its password
// authenticates to the sentinels and to the master and replicas alike (one
// requirepass everywhere, as the Debian and Bitnami setups configure it),
// and the optional database number is honored. A Redis Cluster has only
// database 0.
//
// No error and no String of this package contains the password: the URL is
// printed only through Options.String, which leaves it out.
package redisconn

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// Mode is how the Redis is deployed.
type Mode string

// Modes.
const (
	Single   Mode = "single"
	Sentinel Mode = "sentinel"
	Cluster  Mode = "cluster"
)

// Schemes of LIKENESS_REDIS_URL.
const (
	SchemeRedis    = "redis"
	SchemeRedisTLS = "rediss"
	SchemeSentinel = "redis-sentinel"
	SchemeCluster  = "redis-cluster"
)

// Options are the connection settings a URL names.
type Options struct {
	Mode Mode
	// Addrs is the server (Single), the sentinels (Sentinel) or the seed
	// nodes (Cluster), each host:port.
	Addrs []string
	// MasterName is the name the sentinels monitor the master under.
	MasterName string
	Username   string
	Password   string
	// DB is the database number; always 0 in Cluster mode.
	DB int
	// TLS is set for rediss:// URLs.
	TLS *tls.Config
}

// Parse reads a LIKENESS_REDIS_URL. Its errors say what is wrong without
// quoting the URL, which may hold a password.
func Parse(raw string) (Options, error) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return Options{}, errors.New("not a URL: want redis://, rediss://, redis-sentinel:// or redis-cluster://")
	}
	var o Options
	switch strings.ToLower(scheme) {
	case SchemeRedis, SchemeRedisTLS:
		o.Mode = Single
	case SchemeSentinel:
		o.Mode = Sentinel
	case SchemeCluster:
		o.Mode = Cluster
	default:
		return Options{}, fmt.Errorf("unsupported scheme %q: want redis://, rediss://, redis-sentinel:// or redis-cluster://", scheme)
	}
	// url.Parse quotes the whole URL in its errors; split by hand instead,
	// taking the user information up to the last "@" first, so that no
	// message below quotes any part of it.
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		user, pass, hasPass := strings.Cut(rest[:at], ":")
		var err error
		if o.Username, err = url.PathUnescape(user); err != nil {
			return Options{}, errors.New("the user name is not valid percent-encoding")
		}
		if hasPass {
			if o.Password, err = url.PathUnescape(pass); err != nil {
				return Options{}, errors.New("the password is not valid percent-encoding")
			}
		}
		rest = rest[at+1:]
	}
	rest, query, _ := strings.Cut(rest, "?")
	rest, _, _ = strings.Cut(rest, "#")
	authority, path, _ := strings.Cut(rest, "/")
	for _, a := range strings.Split(authority, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			if o.Mode != Single || strings.Contains(a, ":") {
				return Options{}, fmt.Errorf("address %q: want host:port", a)
			}
			host, port = a, "6379"
		}
		if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 || host == "" {
			return Options{}, fmt.Errorf("address %q: want host:port", a)
		}
		o.Addrs = append(o.Addrs, net.JoinHostPort(host, port))
	}
	switch {
	case len(o.Addrs) == 0:
		return Options{}, errors.New("no host:port address")
	case o.Mode == Single && len(o.Addrs) > 1:
		return Options{}, fmt.Errorf("%d addresses in a %s:// URL: use redis-sentinel:// for sentinels or redis-cluster:// for a Redis Cluster", len(o.Addrs), scheme)
	}
	if path = strings.Trim(path, "/"); path != "" {
		db, err := strconv.Atoi(path)
		if err != nil || db < 0 {
			return Options{}, fmt.Errorf("database %q: want a number after the address", path)
		}
		if o.Mode == Cluster && db != 0 {
			return Options{}, fmt.Errorf("database %d: a Redis Cluster has only database 0", db)
		}
		o.DB = db
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return Options{}, errors.New("the query string is not valid")
	}
	for key := range q {
		if key != "master" || o.Mode != Sentinel {
			return Options{}, fmt.Errorf("unknown parameter %q (only redis-sentinel:// takes one, master)", key)
		}
	}
	if o.Mode == Sentinel {
		if o.MasterName = q.Get("master"); o.MasterName == "" {
			return Options{}, errors.New("redis-sentinel:// needs ?master=NAME, the name the sentinels monitor")
		}
	}
	if strings.EqualFold(scheme, SchemeRedisTLS) {
		host, _, _ := net.SplitHostPort(o.Addrs[0])
		o.TLS = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	}
	return o, nil
}

// String is the URL without its password (nor user name), for messages.
func (o Options) String() string {
	scheme := SchemeRedis
	switch {
	case o.Mode == Sentinel:
		scheme = SchemeSentinel
	case o.Mode == Cluster:
		scheme = SchemeCluster
	case o.TLS != nil:
		scheme = SchemeRedisTLS
	}
	s := scheme + "://"
	if o.Password != "" || o.Username != "" {
		s += "xxxxx@"
	}
	s += strings.Join(o.Addrs, ",")
	if o.Mode != Cluster {
		s += "/" + strconv.Itoa(o.DB)
	}
	if o.Mode == Sentinel {
		s += "?master=" + url.QueryEscape(o.MasterName)
	}
	return s
}

// WithDB returns o on database db (not in Cluster mode, which has only 0).
func (o Options) WithDB(db int) (Options, error) {
	if o.Mode == Cluster && db != 0 {
		return o, fmt.Errorf("database %d: a Redis Cluster has only database 0", db)
	}
	o.DB = db
	return o, nil
}

// Asynq is the connection option for asynq's client, server and inspector.
func (o Options) Asynq() asynq.RedisConnOpt {
	switch o.Mode {
	case Sentinel:
		return asynq.RedisFailoverClientOpt{
			MasterName: o.MasterName, SentinelAddrs: o.Addrs,
			SentinelUsername: o.Username, SentinelPassword: o.Password,
			Username: o.Username, Password: o.Password, DB: o.DB, TLSConfig: o.TLS,
		}
	case Cluster:
		return asynq.RedisClusterClientOpt{Addrs: o.Addrs, Username: o.Username, Password: o.Password, TLSConfig: o.TLS}
	default:
		return asynq.RedisClientOpt{Addr: o.Addrs[0], Username: o.Username, Password: o.Password, DB: o.DB, TLSConfig: o.TLS}
	}
}

// Client is a go-redis client for likeness's own keys. In Sentinel mode it
// follows the master the sentinels name through failovers; in Cluster
// mode it routes each command to the node owning its key's slot.
func (o Options) Client() redis.UniversalClient {
	switch o.Mode {
	case Sentinel:
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName: o.MasterName, SentinelAddrs: o.Addrs,
			SentinelUsername: o.Username, SentinelPassword: o.Password,
			Username: o.Username, Password: o.Password, DB: o.DB, TLSConfig: o.TLS,
		})
	case Cluster:
		return redis.NewClusterClient(&redis.ClusterOptions{Addrs: o.Addrs, Username: o.Username, Password: o.Password, TLSConfig: o.TLS})
	default:
		return redis.NewClient(&redis.Options{Addr: o.Addrs[0], Username: o.Username, Password: o.Password, DB: o.DB, TLSConfig: o.TLS})
	}
}
