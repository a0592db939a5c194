// Package canonical reads the request bodies the gateway forwards to the
// homeserver and writes them anew from that reading: the user named once, in
// one spelling, and only the fields it understood. Bodies two readers could
// take differently are refused ("forward only what was checked").
package canonical
