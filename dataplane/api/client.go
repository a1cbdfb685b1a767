package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/portcullis/portcullis/dataplane/model"
)

// DefaultSocket is where portcullisd listens unless told otherwise.
const DefaultSocket = "/run/portcullis/portcullis.sock"

// Client talks to portcullisd over its unix socket. Refusals come back as
// *model.Error with the status, field and message the agent sent.
type Client struct {
	hc *http.Client
}

// NewClient returns a client for the agent listening on socket.
func NewClient(socket string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		MaxIdleConnsPerHost: 16,
	}
	return &Client{hc: &http.Client{Transport: tr, Timeout: 60 * time.Second}}
}

// Do sends one request; in (if not nil) is the JSON body, out (if not nil)
// receives the JSON answer.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://portcullis"+path, body)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("portcullisd: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("portcullisd: read answer: %w", err)
	}
	if resp.StatusCode >= 300 {
		e := &model.Error{Status: resp.StatusCode}
		if json.Unmarshal(b, e) != nil || e.Msg == "" {
			e.Msg = fmt.Sprintf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
		}
		return e
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("portcullisd: decode answer to %s %s: %w", method, path, err)
		}
	}
	return nil
}

func putJSON[T any](ctx context.Context, c *Client, path string, v T) (T, error) {
	var out T
	err := c.Do(ctx, http.MethodPut, path, v, &out)
	return out, err
}

func getJSON[T any](ctx context.Context, c *Client, path string) (T, error) {
	var out T
	err := c.Do(ctx, http.MethodGet, path, nil, &out)
	return out, err
}

func esc(s string) string { return url.PathEscape(s) }

// Status returns /v1/status.
func (c *Client) Status(ctx context.Context) (map[string]any, error) {
	return getJSON[map[string]any](ctx, c, "/v1/status")
}

// Settings returns the node-wide settings.
func (c *Client) Settings(ctx context.Context) (model.Settings, error) {
	return getJSON[model.Settings](ctx, c, "/v1/settings")
}

// PutSettings replaces the node-wide settings.
func (c *Client) PutSettings(ctx context.Context, s model.Settings) error {
	_, err := putJSON(ctx, c, "/v1/settings", s)
	return err
}

// PutNetwork creates or replaces a network and returns it with defaults.
func (c *Client) PutNetwork(ctx context.Context, n model.Network) (model.Network, error) {
	return putJSON(ctx, c, "/v1/networks/"+esc(n.Name), n)
}

// Network returns one network.
func (c *Client) Network(ctx context.Context, name string) (model.Network, error) {
	return getJSON[model.Network](ctx, c, "/v1/networks/"+esc(name))
}

// Networks lists the networks.
func (c *Client) Networks(ctx context.Context) ([]model.Network, error) {
	return getJSON[[]model.Network](ctx, c, "/v1/networks")
}

// DeleteNetwork removes a network; removing an absent one is not an error.
func (c *Client) DeleteNetwork(ctx context.Context, name string) error {
	return c.Do(ctx, http.MethodDelete, "/v1/networks/"+esc(name), nil, nil)
}

// PutEndpoint creates or replaces an endpoint.
func (c *Client) PutEndpoint(ctx context.Context, e model.Endpoint) (model.Endpoint, error) {
	return putJSON(ctx, c, "/v1/endpoints/"+esc(e.ID), e)
}

// Endpoint returns one endpoint.
func (c *Client) Endpoint(ctx context.Context, id string) (model.Endpoint, error) {
	return getJSON[model.Endpoint](ctx, c, "/v1/endpoints/"+esc(id))
}

// Endpoints lists the endpoints.
func (c *Client) Endpoints(ctx context.Context) ([]model.Endpoint, error) {
	return getJSON[[]model.Endpoint](ctx, c, "/v1/endpoints")
}

// DeleteEndpoint removes an endpoint with its port mappings and links.
func (c *Client) DeleteEndpoint(ctx context.Context, id string) error {
	return c.Do(ctx, http.MethodDelete, "/v1/endpoints/"+esc(id), nil, nil)
}

// PutPort creates or replaces a port mapping.
func (c *Client) PutPort(ctx context.Context, p model.PortMapping) (model.PortMapping, error) {
	return putJSON(ctx, c, "/v1/ports/"+esc(p.ID), p)
}

// Port returns one port mapping.
func (c *Client) Port(ctx context.Context, id string) (model.PortMapping, error) {
	return getJSON[model.PortMapping](ctx, c, "/v1/ports/"+esc(id))
}

// Ports lists the port mappings.
func (c *Client) Ports(ctx context.Context) ([]model.PortMapping, error) {
	return getJSON[[]model.PortMapping](ctx, c, "/v1/ports")
}

// DeletePort removes a port mapping.
func (c *Client) DeletePort(ctx context.Context, id string) error {
	return c.Do(ctx, http.MethodDelete, "/v1/ports/"+esc(id), nil, nil)
}

// PutLink creates or replaces a link; the answer carries Env and Hosts.
func (c *Client) PutLink(ctx context.Context, l model.Link) (model.Link, error) {
	return putJSON(ctx, c, "/v1/links/"+esc(l.Parent)+"/"+esc(l.Alias), l)
}

// GetLink returns one link with its Env and Hosts.
func (c *Client) GetLink(ctx context.Context, parent, alias string) (model.Link, error) {
	return getJSON[model.Link](ctx, c, "/v1/links/"+esc(parent)+"/"+esc(alias))
}

// Links lists the links.
func (c *Client) Links(ctx context.Context) ([]model.Link, error) {
	return getJSON[[]model.Link](ctx, c, "/v1/links")
}

// DeleteLink removes a link.
func (c *Client) DeleteLink(ctx context.Context, parent, alias string) error {
	return c.Do(ctx, http.MethodDelete, "/v1/links/"+esc(parent)+"/"+esc(alias), nil, nil)
}
