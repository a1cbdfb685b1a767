// Command pcctl is Portcullis's debug CLI; see package ctl.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/portcullis/portcullis/ctl"
	"github.com/portcullis/portcullis/dataplane/model"
)

func main() {
	err := ctl.Run(context.Background(), os.Args[1:], ctl.Env{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv})
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		var me *model.Error
		if errors.As(err, &me) && me.Field != "" {
			fmt.Fprintf(os.Stderr, "pcctl: %s (field %s)\n", me.Msg, me.Field)
		} else {
			fmt.Fprintln(os.Stderr, "pcctl:", err)
		}
		os.Exit(1)
	}
}
