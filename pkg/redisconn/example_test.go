package redisconn_test

import (
	"fmt"

	"github.com/likeness-run/likeness/pkg/redisconn"
)

func ExampleParse() {
	o, err := redisconn.Parse("redis-sentinel://:secret@10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379/0?master=mymaster")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(o.Mode, o.MasterName, len(o.Addrs))
	// String never shows the password.
	fmt.Println(o)
	// Output:
	// sentinel mymaster 3
	// redis-sentinel://xxxxx@10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379/0?master=mymaster
}
