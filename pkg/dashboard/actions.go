package dashboard

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"

	"github.com/likeness-run/likeness/pkg/runstate"
)

// ActionResult is an action's JSON answer.
type ActionResult struct {
	OK      bool   `json:"ok"`
	Message string `json:"message"`
}

// action runs POST /api/runs/{id}/{action}: cancel, pause, resume, retry,
// or budget (form or query value budget_usd).
func (h *Handler) action(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Token == "" {
		jsonError(w, http.StatusForbidden, "actions are off: start the dashboard with LIKENESS_DASHBOARD_TOKEN set")
		return
	}
	if h.guesses.Tokens() < 1 {
		jsonError(w, http.StatusTooManyRequests, "too many wrong tokens: try again in a few seconds")
		return
	}
	if !h.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="likeness"`)
		jsonError(w, http.StatusUnauthorized, "log in with the dashboard token to act on runs")
		return
	}
	ctx := r.Context()
	st, ok := h.getRun(w, r)
	if !ok {
		return
	}
	run, act := st.ID, r.PathValue("action")
	var (
		msg string
		err error
	)
	switch act {
	case "cancel":
		err = h.cfg.Runs.Cancel(ctx, run)
		msg = "run canceled: tasks not yet started end as skipped_canceled"
	case "pause":
		err = h.cfg.Runs.Pause(ctx, run)
		msg = "run paused: no new provider calls until it is resumed; calls in flight finish"
	case "resume":
		err = h.cfg.Runs.Resume(ctx, run)
		msg = "run resumed"
	case "retry":
		if h.cfg.Retry == nil {
			jsonError(w, http.StatusNotImplemented, "this server cannot retry tasks")
			return
		}
		var n int
		n, err = h.cfg.Retry(ctx, run)
		msg = fmt.Sprintf("%d failed or skipped tasks back in the queue", n)
		if err == nil && n == 0 {
			msg = "no failed or skipped tasks to retry"
		}
	case "budget":
		r.Body = http.MaxBytesReader(w, r.Body, 4096)
		usd, perr := strconv.ParseFloat(r.FormValue("budget_usd"), 64)
		if perr != nil || math.IsNaN(usd) || math.IsInf(usd, 0) || usd <= 0 {
			jsonError(w, http.StatusBadRequest, "budget_usd: want a dollar amount above 0")
			return
		}
		err = h.cfg.Runs.SetBudget(ctx, run, usd)
		msg = fmt.Sprintf("budget raised to $%.2f", usd)
	default:
		jsonError(w, http.StatusNotFound, "no such action: "+act)
		return
	}
	switch {
	case errors.Is(err, runstate.ErrNotFound):
		jsonError(w, http.StatusNotFound, "run not found")
		return
	case errors.Is(err, runstate.ErrBudget):
		jsonError(w, http.StatusConflict, err.Error())
		return
	case err != nil:
		h.fail(w, r, err)
		return
	}
	h.cfg.Logger.InfoContext(ctx, "dashboard action", "run_id", run, "action", act, "remote", r.RemoteAddr)
	writeJSON(w, ActionResult{OK: true, Message: msg})
}
