package dashboard

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/time/rate"
)

// Wrong-token allowance: a burst, then one guess per interval.
const (
	guessBurst    = 10
	guessInterval = 6 * time.Second
)

func newGuessLimiter() *rate.Limiter { return rate.NewLimiter(rate.Every(guessInterval), guessBurst) }

// sessionCookie holds a login: an expiry and an HMAC of it keyed by the
// token, so the cookie proves the token was typed without carrying it, and
// changing the token ends every session.
const sessionCookie = "likeness_session"

// authorized reports whether the request carries the operator's token, as
// "Authorization: Bearer TOKEN" or a valid session cookie.
func (h *Handler) authorized(r *http.Request) bool {
	if h.cfg.Token == "" {
		return false
	}
	if auth := r.Header.Get("Authorization"); auth != "" {
		scheme, tok, ok := strings.Cut(auth, " ")
		return ok && strings.EqualFold(scheme, "Bearer") && h.tokenOK(strings.TrimSpace(tok))
	}
	c, err := r.Cookie(sessionCookie)
	return err == nil && h.sessionOK(c.Value)
}

// tokenOK compares a presented token with the operator's in constant time.
// Wrong tokens spend from a server-wide allowance (10, then one every 6s),
// so guessing is slow; once it is spent every token is refused until it
// refills.
func (h *Handler) tokenOK(tok string) bool {
	if h.guesses.Tokens() < 1 {
		return false
	}
	if subtle.ConstantTimeCompare([]byte(tok), []byte(h.cfg.Token)) == 1 {
		return true
	}
	h.guesses.Allow()
	return false
}

func (h *Handler) sign(exp int64) string {
	m := hmac.New(sha256.New, []byte(h.cfg.Token))
	m.Write([]byte("likeness-dashboard-session:" + strconv.FormatInt(exp, 10)))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (h *Handler) session() (string, time.Time) {
	exp := h.cfg.Now().Add(h.cfg.SessionTTL)
	return strconv.FormatInt(exp.Unix(), 10) + "." + h.sign(exp.Unix()), exp
}

func (h *Handler) sessionOK(v string) bool {
	expStr, mac, ok := strings.Cut(v, ".")
	if !ok {
		return false
	}
	exp, err := strconv.ParseInt(expStr, 10, 64)
	if err != nil || h.cfg.Now().Unix() >= exp {
		return false
	}
	return hmac.Equal([]byte(mac), []byte(h.sign(exp)))
}

func (h *Handler) actionState(r *http.Request) ActionState {
	return ActionState{Enabled: h.cfg.Token != "", Allowed: h.authorized(r), Retry: h.cfg.Retry != nil}
}

// safeNext keeps a post-login redirect on this server.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return "/"
	}
	return next
}

type loginView struct {
	Next    string
	Error   string
	Enabled bool
	Authed  bool
}

func (h *Handler) loginPage(w http.ResponseWriter, r *http.Request) {
	h.render(w, r, http.StatusOK, "login.html", loginView{
		Next: safeNext(r.URL.Query().Get("next")), Enabled: h.cfg.Token != "", Authed: h.authorized(r),
	})
}

func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	next := safeNext(r.PostForm.Get("next"))
	if h.cfg.Token == "" {
		h.render(w, r, http.StatusForbidden, "login.html", loginView{Next: next,
			Error: "Actions are off: this server was started without LIKENESS_DASHBOARD_TOKEN."})
		return
	}
	if h.guesses.Tokens() < 1 {
		h.render(w, r, http.StatusTooManyRequests, "login.html", loginView{Next: next, Enabled: true, Error: "Too many wrong tokens: try again in a few seconds."})
		return
	}
	if !h.tokenOK(r.PostForm.Get("token")) {
		h.cfg.Logger.WarnContext(r.Context(), "dashboard login refused", "remote", r.RemoteAddr)
		h.render(w, r, http.StatusUnauthorized, "login.html", loginView{Next: next, Enabled: true, Error: "That is not the token."})
		return
	}
	val, exp := h.session()
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: val, Path: "/", Expires: exp, MaxAge: int(h.cfg.SessionTTL.Seconds()),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (h *Handler) logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	http.Redirect(w, r, safeNext(r.FormValue("next")), http.StatusSeeOther)
}
