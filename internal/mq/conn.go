package mq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Options tune a Conn. Zero values take the defaults in brackets.
type Options struct {
	// Heartbeat is the AMQP heartbeat interval: how fast a silently dead
	// peer is noticed [10s].
	Heartbeat time.Duration
	// DialTimeout bounds one TCP connect plus AMQP handshake [5s].
	DialTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between reconnection
	// attempts; it doubles after each failure [100ms, 5s].
	MinBackoff, MaxBackoff time.Duration
	// PublishTimeout caps one Publish call, whatever its ctx says, so that
	// a caller without a deadline never hangs [30s].
	PublishTimeout time.Duration
	// ConnectionName is shown in the RabbitMQ management UI.
	ConnectionName string
	// Declare lists the queues to declare right after each connect, before
	// the Conn reports ready: every queue the program publishes to or
	// consumes (with a consumer's DeadLetterQueue), so that on a fresh
	// broker, or one that replaced the old, the queues exist before any
	// message is sent and another program (the original's consumers) can
	// consume them. Each is declared as Publish does it (see Publish). A
	// connection on which a declare fails is dropped and dialled again.
	Declare []string
	// Metrics, if not nil, receives the publish and consume counters.
	Metrics *Metrics
}

func (o *Options) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.Heartbeat, 10*time.Second)
	def(&o.DialTimeout, 5*time.Second)
	def(&o.MinBackoff, 100*time.Millisecond)
	def(&o.MaxBackoff, 5*time.Second)
	def(&o.PublishTimeout, 30*time.Second)
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = o.MinBackoff
	}
}

// Conn is a self-healing AMQP connection: after the broker goes away it
// redials with exponential backoff until Close, and the publishers and
// consumers built on it carry on with the new connection. It is safe for
// concurrent use.
type Conn struct {
	url  string
	addr string // host:port/vhost, for logs (no credentials)
	log  *slog.Logger
	opt  Options
	m    *Metrics

	stop    context.CancelFunc
	stopped context.Context
	done    chan struct{} // closed when the redial loop has exited

	mu      sync.Mutex
	cur     *session      // nil while disconnected
	ready   chan struct{} // closed while cur != nil; replaced when the connection is lost
	lastErr error         // why the last dial failed or the connection was lost
}

// session is one physical connection and what hangs off it.
type session struct {
	conn *amqp.Connection
	log  *slog.Logger

	mu       sync.Mutex
	pub      *amqp.Channel // confirm-mode channel shared by all publishers
	declared map[string]bool
}

// New returns a Conn that connects to url in the background and keeps
// reconnecting until Close; it fails only on an invalid URL. Until the
// broker is reached, Ready reports an error and Publish waits (within its
// ctx) for the connection.
func New(url string, log *slog.Logger, opt Options) (*Conn, error) {
	if log == nil {
		return nil, errors.New("mq: nil logger")
	}
	uri, err := amqp.ParseURI(url)
	if err != nil {
		// The URL may hold a password: don't echo it.
		return nil, errors.New("mq: invalid RABBITMQ_URL (want amqp://user:password@host:port/vhost)")
	}
	opt.setDefaults()
	vhost := uri.Vhost
	if vhost == "" {
		vhost = "/"
	}
	c := &Conn{
		url:   url,
		addr:  net.JoinHostPort(uri.Host, fmt.Sprint(uri.Port)) + " vhost " + vhost,
		opt:   opt,
		m:     opt.Metrics,
		done:  make(chan struct{}),
		ready: make(chan struct{}),
	}
	c.log = log.With("component", "mq", "broker", c.addr)
	c.stopped, c.stop = context.WithCancel(context.Background())
	go c.run()
	return c, nil
}

// Close stops reconnecting and closes the connection. Publish and Consume
// calls in progress fail with ErrClosed or ErrUnavailable. Close is
// idempotent.
func (c *Conn) Close() error {
	c.stop()
	<-c.done
	return nil
}

// Ready returns nil while the Conn is connected, else an error wrapping
// ErrUnavailable with the reason. It does not block (for /readyz).
func (c *Conn) Ready(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped.Err() != nil {
		return ErrClosed
	}
	if c.cur != nil && !c.cur.conn.IsClosed() {
		return nil
	}
	if c.lastErr != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, c.lastErr)
	}
	return fmt.Errorf("%w: not connected yet", ErrUnavailable)
}

// session returns the live connection, waiting for one until ctx ends.
// The error wraps ErrUnavailable (ctx ended) or is ErrClosed.
func (c *Conn) session(ctx context.Context) (*session, error) {
	for {
		c.mu.Lock()
		s, ready, lastErr := c.cur, c.ready, c.lastErr
		c.mu.Unlock()
		if c.stopped.Err() != nil {
			return nil, ErrClosed
		}
		if s != nil && !s.conn.IsClosed() {
			return s, nil
		}
		wait := ready
		if s != nil {
			// Lost, but the redial loop has not noticed yet: poll briefly.
			wait = nil
		}
		t := time.NewTimer(20 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			if lastErr != nil {
				return nil, fmt.Errorf("%w: %w (last error: %v)", ErrUnavailable, ctx.Err(), lastErr)
			}
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
		case <-c.stopped.Done():
			t.Stop()
			return nil, ErrClosed
		case <-wait:
			t.Stop()
		case <-t.C:
		}
	}
}

// run dials, waits for the connection to die, and dials again, until Close.
func (c *Conn) run() {
	defer close(c.done)
	backoff := c.opt.MinBackoff
	failures := 0
	var downSince time.Time
	for {
		conn, err := c.dial()
		var s *session
		if err == nil {
			s = &session{conn: conn, log: c.log, declared: map[string]bool{}}
			if err = c.declareAll(s); err != nil {
				_ = conn.Close()
			}
		}
		if err != nil {
			if c.stopped.Err() != nil {
				return
			}
			failures++
			c.mu.Lock()
			c.lastErr = err
			c.mu.Unlock()
			lvl := slog.LevelDebug
			if failures == 1 || failures%20 == 0 {
				lvl = slog.LevelWarn
			}
			c.log.Log(context.Background(), lvl, "rabbitmq connect failed, retrying",
				"err", err, "attempt", failures, "retry_in", backoff.String())
			if !sleep(c.stopped, backoff) {
				return
			}
			backoff = min(backoff*2, c.opt.MaxBackoff)
			continue
		}
		closed := conn.NotifyClose(make(chan *amqp.Error, 1))
		blocked := conn.NotifyBlocked(make(chan amqp.Blocking, 4))
		c.mu.Lock()
		c.cur, c.lastErr = s, nil
		close(c.ready)
		c.mu.Unlock()
		c.m.onConnected(true)
		if downSince.IsZero() {
			c.log.Info("rabbitmq connected", "queues_declared", c.opt.Declare)
		} else {
			c.m.onReconnect()
			c.log.Info("rabbitmq reconnected", "queues_declared", c.opt.Declare, "attempts", failures,
				"down_for", time.Since(downSince).Round(time.Millisecond).String())
		}
		failures, backoff = 0, c.opt.MinBackoff

		var reason error
	wait:
		for {
			select {
			case <-c.stopped.Done():
				c.mu.Lock()
				c.cur = nil
				c.mu.Unlock()
				c.m.onConnected(false)
				if err := conn.Close(); err != nil && !errors.Is(err, amqp.ErrClosed) {
					c.log.Warn("rabbitmq close", "err", err)
				}
				return
			case b := <-blocked:
				if b.Active {
					c.log.Warn("rabbitmq blocked publishing", "reason", b.Reason)
				} else {
					c.log.Info("rabbitmq unblocked publishing")
				}
			case e, ok := <-closed:
				if ok && e != nil {
					reason = e
				} else {
					reason = errors.New("connection closed")
				}
				break wait
			}
		}
		downSince = time.Now()
		c.mu.Lock()
		c.cur, c.lastErr = nil, reason
		c.ready = make(chan struct{})
		c.mu.Unlock()
		c.m.onConnected(false)
		c.log.Warn("rabbitmq connection lost, reconnecting", "err", reason)
	}
}

func (c *Conn) dial() (*amqp.Connection, error) {
	props := amqp.NewConnectionProperties()
	if c.opt.ConnectionName != "" {
		props.SetClientConnectionName(c.opt.ConnectionName)
	}
	timeout := c.opt.DialTimeout
	conn, err := amqp.DialConfig(c.url, amqp.Config{
		Heartbeat:  c.opt.Heartbeat,
		Locale:     "en_US",
		Properties: props,
		Dial: func(network, addr string) (net.Conn, error) {
			d := net.Dialer{Timeout: timeout}
			nc, err := d.DialContext(c.stopped, network, addr)
			if err != nil {
				return nil, err
			}
			// Bounds the AMQP handshake; amqp091 clears it once open.
			if err := nc.SetDeadline(time.Now().Add(timeout)); err != nil {
				nc.Close()
				return nil, err
			}
			return nc, nil
		},
	})
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	return conn, nil
}

// declareAll declares Options.Declare on a new session, within
// DialTimeout. On an error the caller closes the connection, which also
// ends a declare left waiting for the broker.
func (c *Conn) declareAll(s *session) error {
	if len(c.opt.Declare) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(c.stopped, c.opt.DialTimeout)
	defer cancel()
	err := withCtx(ctx, func() error {
		for _, q := range c.opt.Declare {
			if q == "" {
				continue
			}
			if err := s.declare(q); err != nil {
				return err
			}
		}
		return nil
	})
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return fmt.Errorf("declare queues %v: no answer within %s: %w", c.opt.Declare, c.opt.DialTimeout, err)
	}
	return err
}

// publisher returns the session's confirm-mode publishing channel, opening
// a new one if there is none or the last one was closed.
func (s *session) publisher() (*amqp.Channel, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pub != nil && !s.pub.IsClosed() {
		return s.pub, nil
	}
	ch, err := s.conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("open channel: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		ch.Close()
		return nil, fmt.Errorf("enable publisher confirms: %w", err)
	}
	s.pub = ch
	return ch, nil
}

// declare makes sure queue exists, once per connection: a passive declare
// (which accepts a queue an operator created with any arguments), and when
// the queue is absent a durable declare with no arguments. It uses
// throwaway channels because a failed declare closes its channel.
func (s *session) declare(queue string) error {
	s.mu.Lock()
	done := s.declared[queue]
	s.mu.Unlock()
	if done {
		return nil
	}
	exists, err := s.withChannel(func(ch *amqp.Channel) (bool, error) {
		_, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
		var ae *amqp.Error
		if errors.As(err, &ae) && ae.Code == amqp.NotFound {
			return false, nil
		}
		return err == nil, err
	})
	if err != nil {
		return fmt.Errorf("check queue %s: %w", queue, err)
	}
	if !exists {
		if _, err := s.withChannel(func(ch *amqp.Channel) (bool, error) {
			_, err := ch.QueueDeclare(queue, true, false, false, false, nil)
			return err == nil, err
		}); err != nil {
			return fmt.Errorf("declare queue %s: %w", queue, err)
		}
		s.log.Info("declared queue", "queue", queue, "durable", true)
	}
	s.mu.Lock()
	s.declared[queue] = true
	s.mu.Unlock()
	return nil
}

func (s *session) withChannel(f func(*amqp.Channel) (bool, error)) (bool, error) {
	ch, err := s.conn.Channel()
	if err != nil {
		return false, fmt.Errorf("open channel: %w", err)
	}
	ok, err := f(ch)
	if !ch.IsClosed() {
		_ = ch.Close()
	}
	return ok, err
}

// withCtx runs f (whose amqp091 calls ignore contexts) and returns its
// error, or ctx's if ctx ends first; f then finishes in the background.
func withCtx(ctx context.Context, f func() error) error {
	res := make(chan error, 1)
	go func() { res <- f() }()
	select {
	case err := <-res:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// sleep waits d or until ctx ends; it reports whether the full d elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
