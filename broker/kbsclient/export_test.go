package kbsclient

import (
	"context"
	"crypto/ecdsa"
)

// Hooks for the external tests (package kbsclient_test, which imports kv
// and so cannot be in this package).

// CurrentSession is the current session (nil if none), compared by identity.
func (c *Client) CurrentSession() any {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess == nil {
		return nil
	}
	return c.sess
}

// AttestedSession returns the session's cookie and key, attesting if needed.
func (c *Client) AttestedSession(ctx context.Context) (string, *ecdsa.PrivateKey, error) {
	s, _, err := c.session(ctx)
	if err != nil {
		return "", nil, err
	}
	return s.cookie, s.key, nil
}

// RawResource fetches a resource's JWE in session cookie.
func (c *Client) RawResource(ctx context.Context, cookie, path string) ([]byte, error) {
	_, body, err := c.do(ctx, "resource", "GET", "/resource/"+path, nil, cookie)
	return body, err
}
