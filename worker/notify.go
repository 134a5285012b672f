package worker

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/likeness-run/likeness/pkg/store"
	"github.com/likeness-run/likeness/pkg/task"
)

// Webhook is where a worker announces finished runs: the last step of the
// lifecycle, after the fan-in has written the manifest, run.json and the
// report. Each finalization of a run is one run:notify task (deduplicated
// by its id), so a receiver that is down is retried with asynq's backoff,
// and a slow receiver never holds up the fan-in.
//
// The request is a POST of WebhookEvent as JSON, signed the Standard
// Webhooks way (https://www.standardwebhooks.com): headers webhook-id (the
// same on every retry, for deduplication), webhook-timestamp (Unix seconds)
// and webhook-signature "v1,<base64 HMAC-SHA256 of id.timestamp.body>". The
// URL and the secret are the worker's own configuration; neither is ever
// written to a task payload, a log or a trace (logs name the host only).
type Webhook struct {
	// URL receives the POST; empty disables webhooks.
	URL string
	// Secret signs every request. A "whsec_" prefix marks a base64 secret,
	// as Standard Webhooks issues them; anything else is used as bytes.
	// Empty: requests are not signed.
	Secret string
	// Client sends the requests. Default: a client with a 30s timeout.
	Client *http.Client
}

// WebhookEvent is the body of a webhook request.
type WebhookEvent struct {
	// Type is always "run.finished".
	Type string `json:"type"`
	// RunID and Finalization identify what is announced: a run finalized
	// again by `likeness retry` is announced again with the next number.
	RunID        string `json:"run_id"`
	Finalization int    `json:"finalization"`
	// Summary is the run's run.json.
	Summary json.RawMessage `json:"summary"`
	// ManifestKey, SummaryKey and ReportKey are the run's files, as object
	// keys in the bucket (or paths under the output directory).
	ManifestKey string `json:"manifest_key"`
	SummaryKey  string `json:"summary_key"`
	ReportKey   string `json:"report_key"`
}

// enqueueNotify queues the webhook of one finalization, when one is set.
func (w *Worker) enqueueNotify(ctx context.Context, run string, finalization int) error {
	if w.cfg.Webhook.URL == "" {
		return nil
	}
	n := task.Notify{RunID: run, Finalization: finalization}
	b, err := json.Marshal(n)
	if err != nil {
		return err
	}
	_, err = w.client.EnqueueContext(ctx, asynq.NewTask(task.TypeNotify, b), asynq.TaskID(n.QueueID()),
		asynq.Queue(task.QueueControl), asynq.MaxRetry(12), asynq.Retention(task.FinalizeRetention))
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return fmt.Errorf("enqueue webhook of %s: %w", run, err)
	}
	return nil
}

// handleNotify delivers one run.finished webhook.
func (w *Worker) handleNotify(ctx context.Context, t *asynq.Task) error {
	var n task.Notify
	if err := task.Decode(t.Type(), t.Payload(), &n); err != nil {
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	hook := w.cfg.Webhook
	if hook.URL == "" {
		w.log.WarnContext(ctx, "run webhook queued by another worker, but this one has no LIKENESS_WEBHOOK_URL: dropped; configure every worker alike", "run_id", n.RunID)
		return nil
	}
	sum, err := w.cfg.Store.Get(ctx, store.SummaryKey(n.RunID))
	if err != nil {
		return fmt.Errorf("read run.json of %s: %w", n.RunID, err)
	}
	body, err := json.Marshal(WebhookEvent{
		Type: "run.finished", RunID: n.RunID, Finalization: n.Finalization, Summary: sum,
		ManifestKey: store.ManifestKey(n.RunID), SummaryKey: store.SummaryKey(n.RunID), ReportKey: store.ReportKey(n.RunID),
	})
	if err != nil {
		return fmt.Errorf("encode webhook: %w", err)
	}
	status, err := hook.post(ctx, n.QueueID(), w.cfg.Now(), body)
	host := webhookHost(hook.URL)
	switch {
	case err != nil:
		return fmt.Errorf("webhook to %s: %w", host, err) // retried
	case status >= 200 && status < 300:
		w.log.InfoContext(ctx, "run webhook delivered", "run_id", n.RunID, "host", host, "status", status)
		return nil
	case status == http.StatusTooManyRequests || status >= 500:
		return fmt.Errorf("webhook to %s answered %d", host, status) // retried
	default:
		// The receiver refuses this request; sending it again will not help.
		w.log.ErrorContext(ctx, "run webhook refused", "run_id", n.RunID, "host", host, "status", status)
		return fmt.Errorf("webhook to %s answered %d: %w", host, status, asynq.SkipRetry)
	}
}

// post sends one signed request and returns the response status.
func (h Webhook) post(ctx context.Context, id string, now time.Time, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL, bytes.NewReader(body))
	if err != nil {
		return 0, errors.New("bad webhook URL") // the URL itself may hold a token: not quoted
	}
	ts := strconv.FormatInt(now.Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "likeness-webhook")
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", ts)
	if h.Secret != "" {
		req.Header.Set("webhook-signature", "v1,"+SignWebhook(h.Secret, id, ts, body))
	}
	client := h.Client
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // *url.Error quotes the URL, which may hold a token
		}
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, nil
}

// SignWebhook is the base64 HMAC-SHA256 of "id.timestamp.body" with secret,
// as Standard Webhooks defines it; receivers compute the same to verify.
func SignWebhook(secret, id, timestamp string, body []byte) string {
	key := []byte(secret)
	if b64, ok := strings.CutPrefix(secret, "whsec_"); ok {
		if k, err := base64.StdEncoding.DecodeString(b64); err == nil {
			key = k
		}
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + timestamp + "."))
	mac.Write(body)
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// webhookHost is what logs may say about the URL: scheme and host, never
// the path or query, where receivers put their tokens.
func webhookHost(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(invalid URL)"
	}
	return u.Scheme + "://" + u.Host
}
