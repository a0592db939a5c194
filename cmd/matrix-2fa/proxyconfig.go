package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"github.com/matrix-2fa/matrix-2fa/proxyconf"
)

const proxyConfigSynopsis = "proxy-config nginx|caddy [--gateway URL] [--homeserver URL] [--listen ADDR] [--server-name NAME] [--http | --tls-cert FILE --tls-key FILE] [--max-body-size SIZE] [--fragment] [-o FILE [--force]]"

// proxyConfig prints the reverse-proxy configuration for split routing.
func (c *cli) proxyConfig(args []string) int {
	fset := c.newFlagSet("proxy-config", proxyConfigSynopsis)
	var o proxyconf.Options
	fset.StringVar(&o.Gateway, "gateway", proxyconf.DefaultGateway, "the gateway's `URL` (its listen address)")
	fset.StringVar(&o.Homeserver, "homeserver", proxyconf.DefaultHomeserver, "the homeserver's client API base `URL`")
	fset.StringVar(&o.Listen, "listen", "", "`PORT` or HOST:PORT the proxy listens on (default 443, or 80 with --http)")
	fset.StringVar(&o.ServerName, "server-name", "", "the `HOST` clients use, e.g. matrix.example.org (default: any)")
	fset.BoolVar(&o.PlainHTTP, "http", false, "serve plain HTTP (tests, or behind a TLS terminator)")
	fset.StringVar(&o.TLSCert, "tls-cert", "", "TLS certificate chain `FILE` (PEM); without it Caddy gets one for --server-name")
	fset.StringVar(&o.TLSKey, "tls-key", "", "TLS private key `FILE` (PEM)")
	maxBody := fset.String("max-body-size", "50M", "largest request body (media uploads): bytes, or with a K, M or G suffix")
	fset.BoolVar(&o.Fragment, "fragment", false, "nginx: only what goes inside http { } of an existing nginx (conf.d)")
	out := fset.String("o", "", "write to `FILE` instead of stdout")
	force := fset.Bool("force", false, "overwrite FILE if it exists")
	rest, code, ok := parseArgs(fset, args)
	if !ok {
		return code
	}
	if !c.wantArgs(fset, rest, "nginx|caddy") {
		return exitUsage
	}
	format := proxyconf.Format(rest[0])
	var errs []error
	if format != proxyconf.Nginx && format != proxyconf.Caddy {
		errs = append(errs, fmt.Errorf("unknown proxy %q: want nginx or caddy", rest[0]))
	}
	size, err := parseSize(*maxBody)
	if err != nil {
		errs = append(errs, fmt.Errorf("max-body-size: %v", err))
	}
	o.MaxBodySize = size
	if err == nil && format != "" {
		errs = append(errs, o.Validate(format)...)
	}
	if len(errs) > 0 {
		fmt.Fprintln(c.stderr, "matrix-2fa proxy-config: invalid options:")
		for _, e := range errs {
			fmt.Fprintf(c.stderr, "  - %v\n", e)
		}
		return exitUsage
	}
	data, err := proxyconf.Generate(format, o, commandLine(append([]string{"matrix-2fa", "proxy-config"}, args...)))
	if err != nil {
		fmt.Fprintf(c.stderr, "matrix-2fa proxy-config: %v\n", err)
		return exitError
	}
	if *out == "" {
		if _, err := c.stdout.Write(data); err != nil {
			fmt.Fprintf(c.stderr, "matrix-2fa proxy-config: %v\n", err)
			return exitError
		}
		return exitOK
	}
	if err := writeProxyConfig(*out, data, *force); err != nil {
		fmt.Fprintf(c.stderr, "matrix-2fa proxy-config: %v\n", err)
		return exitError
	}
	fmt.Fprintf(c.stderr, "wrote %s\n", *out)
	return exitOK
}

// parseSize reads a size in bytes, with an optional K, M or G suffix (powers
// of 1024, as nginx reads them).
func parseSize(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	shift := 0
	switch {
	case strings.HasSuffix(t, "K"):
		shift = 10
	case strings.HasSuffix(t, "M"):
		shift = 20
	case strings.HasSuffix(t, "G"):
		shift = 30
	}
	if shift > 0 {
		t = t[:len(t)-1]
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n <= 0 || n > (1<<40)>>shift {
		return 0, fmt.Errorf("%q: want a positive number of bytes, or with a K, M or G suffix", s)
	}
	return n << shift, nil
}

// commandLine renders args for the file's header comment: one line, each
// argument quoted if it needs it.
func commandLine(args []string) string {
	quoted := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsFunc(a, func(r rune) bool { return r <= ' ' || r == '"' || r == '\'' || r == '\\' || r == 0x7f }) {
			a = strconv.Quote(a)
		}
		quoted[i] = a
	}
	return strings.Join(quoted, " ")
}

// writeProxyConfig writes data to path, readable by the proxy's own user
// (the file holds no secret), refusing to replace an existing file unless
// force is set.
func writeProxyConfig(path string, data []byte, force bool) error {
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s already exists; pass --force to overwrite it", path)
	}
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
