// Command bundleapp is the app the encrypted-bundle tests encrypt: an
// enclave app that prints a marker (found in its binary only, so the
// tests can look for its plaintext in the bundle and on the wire), its
// measurement and its arguments, then echoes one line over the host's
// network if asked (--echo ADDR), and exits.
package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"os"

	"github.com/cloister-dev/cloister/enclave"
)

// marker appears in this binary and in its output only.
const marker = "BUNDLEAPP-PLAINTEXT-MARKER-5d1e"

func main() {
	echo := flag.String("echo", "", "an echo server ADDR to send a line to, through the host")
	showBroker := flag.Bool("show-broker", false, "print the broker URL the host handed the app (CLOISTER_BROKER_URL)")
	flag.Parse()
	enclave.Run(func(ctx context.Context, env *enclave.Env) error {
		fmt.Printf("%s: running as %s, args %q\n", marker, hex.EncodeToString(env.Platform().Identity().Measurement), flag.Args())
		if *showBroker {
			fmt.Printf("broker url %q\n", os.Getenv("CLOISTER_BROKER_URL"))
		}
		if *echo == "" {
			return nil
		}
		c, err := env.DialContext(ctx, "tcp", *echo)
		if err != nil {
			return err
		}
		defer c.Close()
		fmt.Fprintln(c, "hello from the bundle")
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return err
		}
		fmt.Printf("echoed: %s", line)
		return nil
	})
}
