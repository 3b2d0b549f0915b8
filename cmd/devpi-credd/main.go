// Command devpi-credd gives Python packaging tools short-lived, narrowly
// scoped devpi tokens in place of long-lived ones.
package main

import "os"

func main() { os.Exit(Main()) }
