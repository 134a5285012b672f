package runway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"

	"github.com/likeness-run/likeness/pkg/provider"
)

// uploadStarted is the answer of POST /v1/uploads: a presigned form to post
// the file to, and the URI that names the upload in generation requests.
type uploadStarted struct {
	UploadURL string            `json:"uploadUrl"`
	Fields    map[string]string `json:"fields"`
	RunwayURI string            `json:"runwayUri"`
}

// upload stores a reference too large for a data URI with Runway's
// ephemeral uploads and returns its runway:// URI: POST /v1/uploads (with
// the key) for a presigned form, then the form's fields and the file as
// multipart/form-data to its uploadUrl, an object store's, without the key.
// Each call uploads once; Runway deletes ephemeral uploads after a while.
func (c *Client) upload(ctx context.Context, data []byte) (string, error) {
	ct := http.DetectContentType(data)
	name := "reference" + map[string]string{"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}[ct]
	payload, _ := json.Marshal(map[string]string{"filename": name, "type": "ephemeral"})
	status, hdr, body, err := c.do(ctx, http.MethodPost, c.cfg.BaseURL+"/v1/uploads", payload)
	if err != nil {
		return "", c.transportError("start reference upload", "", err)
	}
	if status < 200 || status > 299 {
		e := c.classify(status, hdr, body, "")
		e.Message = "start reference upload: " + e.Message
		return "", e
	}
	var up uploadStarted
	if err := json.Unmarshal(body, &up); err != nil || up.RunwayURI == "" || up.UploadURL == "" {
		return "", &provider.Error{Class: provider.Transient, Provider: ProviderName, Status: status, Code: "malformed_response",
			Message: "upload answer is not {uploadUrl, fields, runwayUri}: " + c.clip(string(body)), Err: err}
	}
	if u, err := url.Parse(up.UploadURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") {
		return "", &provider.Error{Class: provider.Transient, Provider: ProviderName, Code: "malformed_response",
			Message: "uploadUrl is not an http(s) URL: " + c.clip(up.UploadURL)}
	}

	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	for k, v := range up.Fields {
		if err := mw.WriteField(k, v); err != nil {
			return "", &provider.Error{Class: provider.Input, Provider: ProviderName, Message: "encode upload form", Err: err}
		}
	}
	// The file goes last: object stores ignore fields after it.
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="file"; filename=%q`, name))
	h.Set("Content-Type", ct)
	part, err := mw.CreatePart(h)
	if err == nil {
		_, err = part.Write(data)
	}
	if err == nil {
		err = mw.Close()
	}
	if err != nil {
		return "", &provider.Error{Class: provider.Input, Provider: ProviderName, Message: "encode upload form", Err: err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, up.UploadURL, &form)
	if err != nil {
		return "", &provider.Error{Class: provider.Transient, Provider: ProviderName, Message: "upload request", Err: err}
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return "", c.transportError("upload reference", "", err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		// The presigned form expired or was refused: a new upload may pass.
		return "", &provider.Error{Class: provider.Transient, Provider: ProviderName, Status: resp.StatusCode,
			Message: fmt.Sprintf("upload reference: %s: %s", resp.Status, c.clip(string(answer)))}
	}
	return up.RunwayURI, nil
}
