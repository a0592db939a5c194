package gateway_test

import "context"

// EmailAddresses implements gateway.Homeserver: the fake knows no addresses.
func (f *fakeHS) EmailAddresses(context.Context, string) ([]string, error) { return nil, nil }
