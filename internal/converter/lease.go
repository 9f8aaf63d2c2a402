package converter

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"time"

	"mp3converter/internal/jobs"
	"mp3converter/internal/lease"
)

// A converter works on a video only while it holds the video's lease (see
// jobs.TakeLease): a second converter handed the same video (a duplicate
// message, or one the broker took back from a converter that still runs)
// finds the lease held and defers its message, without counting an attempt
// or telling the user anything, until the first is done; then it finds the
// MP3 made and the job done, and only acks.
//
// The MP3's upload bears the lease owner's name (gridfs.UploadOptions.Writer).
// A converter that took a lease over names the previous holder
// (UploadOptions.Supersede), so that an upload claim that holder left behind
// does not keep it waiting.
//
// The lease is taken before anything else is looked at (a withdrawn upload,
// an MP3 already there), covers the conversion, the upload, the success or
// failure message and the job's last state, and is released last. It is
// renewed every third of LeaseTTL; a converter that cannot renew it in
// time, or finds it taken, stops its conversion (ffmpeg is killed) and
// defers the message. One that dies leaves a lease that expires LeaseTTL
// after its last renewal; or, when it was a process of this machine (same
// kernel boot and PID namespace) that is gone, is taken over at once.
//
// Every video has its lease, including one stored by the original gateway,
// which has no job record: the leases have their own collection, keyed by
// the video's ID.

// Outcome of a message deferred because another converter holds its video.
const resultDeferred = "deferred"

// reportMargin is how long after JOB_TIMEOUT the lease still covers the
// failure report and the last job write.
const reportMargin = time.Minute

var (
	// errBusy is wrapped by the error of a job that another converter is
	// working on (it holds the lease, or is writing the MP3).
	errBusy = errors.New("another converter is working on this video")
	// errLeaseLost is the cause of a job's context cancelled because its
	// lease could not be kept.
	errLeaseLost = errors.New("the video's lease was lost")
)

// processHolder is this process as a lease holder: Owner is
// "<hostname>/<random>", unique to this Service; each job's holder adds
// "#<n>".
func processHolder() jobs.Holder {
	host, _ := os.Hostname()
	var b [6]byte
	_, _ = rand.Read(b[:])
	boot, pidns, pid, start := selfIdentity()
	return jobs.Holder{Owner: host + "/" + hex.EncodeToString(b[:]), Host: host,
		Boot: boot, PIDNS: pidns, PID: pid, Start: start}
}

// holderDead reports whether h is a process of this machine, seen from
// this PID namespace, that no longer runs (its PID is gone, or belongs to a
// later process). Of any other holder nothing is known: its lease expires.
func (s *Service) holderDead(h jobs.Holder) bool {
	me := s.self
	switch {
	case me.Boot == "" || me.PIDNS == "" || h.Boot != me.Boot || h.PIDNS != me.PIDNS || h.PID <= 0 || h.Start <= 0:
		return false
	case h.PID == me.PID && h.Start == me.Start:
		return false // this process: alive
	}
	start, ok := processStart(h.PID)
	return !ok || start != h.Start
}

// lease takes j's lease and keeps it until release is called. The returned
// ctx (under ctx, for at most JobTimeout + reportMargin) is cancelled with
// cause errLeaseLost if the lease is lost meanwhile. Another holder's lease
// gives an error wrapping errBusy.
func (s *Service) lease(ctx context.Context, j *job) (lctx context.Context, release func(), err error) {
	h := s.self
	h.Owner = fmt.Sprintf("%s#%d", s.self.Owner, s.seq.Add(1))
	dead := func(other jobs.Holder) bool {
		if !s.holderDead(other) {
			return false
		}
		j.log.Warn("the video's lease is held by a process of this machine that is gone: taking it over",
			"holder", other.Owner, "holder_pid", other.PID)
		return true
	}
	l, err := s.d.Jobs.TakeLease(ctx, j.fid(), h, s.opt.LeaseTTL, dead)
	var held *jobs.LeaseHeldError
	switch {
	case errors.As(err, &held):
		j.log.Debug("another converter holds the video's lease: deferred", "holder", held.Lease.Owner,
			"holder_host", held.Lease.Host, "holder_pid", held.Lease.PID, "lease_until", held.Lease.Until)
		return nil, nil, fmt.Errorf("%w: %w", errBusy, err)
	case errors.Is(err, jobs.ErrLeased):
		return nil, nil, fmt.Errorf("%w: %w", errBusy, err)
	case err != nil:
		return nil, nil, fmt.Errorf("take the video's lease: %w", err)
	}
	j.log.Debug("lease taken", "owner", h.Owner, "until", l.Until)
	j.writer = h.Owner
	if l.Previous != nil {
		j.supersede = l.Previous.Owner
		j.log.Info("took over the video's lease", "previous_holder", l.Previous.Owner,
			"previous_host", l.Previous.Host, "previous_pid", l.Previous.PID)
	}

	bounded, stop := context.WithTimeout(ctx, s.opt.JobTimeout+reportMargin)
	lctx, unkeep := s.keepLease(bounded, j, h.Owner, l.Until)
	return lctx, func() {
		unkeep()
		stop()
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := s.d.Jobs.ReleaseLease(rctx, j.fid(), h.Owner); err != nil {
			j.log.Warn("could not release the video's lease; it expires by itself", "err", err, "ttl", s.opt.LeaseTTL.String())
		}
	}, nil
}

// keepLease renews owner's lease (in force until until) every third of
// LeaseTTL until stop is called (see lease.Keep). When the lease is taken by
// another, or cannot be renewed before it would expire, it cancels the
// returned ctx with errLeaseLost: two converters must not write the same
// MP3.
func (s *Service) keepLease(ctx context.Context, j *job, owner string, until time.Time) (kctx context.Context, stop func()) {
	renew := func(ctx context.Context) error { return s.d.Jobs.RenewLease(ctx, j.fid(), owner, s.opt.LeaseTTL) }
	return lease.Keep(ctx, s.opt.LeaseTTL, until, renew, lease.KeepOptions{
		Lost: func(err error) error {
			if errors.Is(err, jobs.ErrLeaseLost) {
				j.log.Warn("the video's lease was taken by another converter: stopping", "err", err)
			} else {
				j.log.Warn("could not renew the video's lease before it expires: stopping", "err", err)
			}
			return errLeaseLost
		},
		Retry: func(err error, until time.Time) {
			j.log.Warn("could not renew the video's lease, will try again", "err", err, "lease_until", until)
		},
	})
}

// maxDeferrals is how many times a message may be deferred for another
// converter's lease: enough for the backoffs (base doubling up to limit,
// as internal/mq waits them) to add up to twice the longest a lease can be
// held, a whole job (jobTimeout + reportMargin) and the ttl after its
// holder died. mq counts deferrals beyond it as failed attempts.
func maxDeferrals(jobTimeout, ttl, base, limit time.Duration) int {
	if base <= 0 {
		base = time.Second
	}
	limit = max(limit, base)
	span := 2 * (jobTimeout + ttl + reportMargin)
	n := 0
	for d, total := base, time.Duration(0); total < span; n++ {
		total += d
		d = min(2*d, limit)
	}
	return max(n, 1)
}
