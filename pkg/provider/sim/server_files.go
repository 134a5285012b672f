package sim

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

const (
	// maxUploadBytes is Replicate's file size limit (413 at or above it).
	maxUploadBytes = 100 << 20
	// maxUploadTotal bounds the bytes of all uploads kept; the oldest go first.
	maxUploadTotal = 1 << 30
	// uploadLifetime is how long an upload is served, as Replicate's expires_at.
	uploadLifetime = 24 * time.Hour
)

// upload is a file uploaded with POST /v1/files.
type upload struct {
	id          string
	name        string
	contentType string
	metadata    json.RawMessage
	data        []byte
	sha256      [sha256.Size]byte
	md5         [md5.Size]byte
	created     time.Time
}

// fileJSON is Replicate's file object.
type fileJSON struct {
	ID          string            `json:"id"`
	Name        string            `json:"name"`
	ContentType string            `json:"content_type"`
	Size        int               `json:"size"`
	Etag        string            `json:"etag"`
	Checksums   map[string]string `json:"checksums"`
	Metadata    json.RawMessage   `json:"metadata"`
	CreatedAt   string            `json:"created_at"`
	ExpiresAt   string            `json:"expires_at"`
	URLs        map[string]string `json:"urls"`
}

func (f *upload) json(base string) fileJSON {
	return fileJSON{
		ID: f.id, Name: f.name, ContentType: f.contentType, Size: len(f.data), Etag: hex.EncodeToString(f.md5[:]),
		Checksums: map[string]string{"sha256": hex.EncodeToString(f.sha256[:]), "md5": hex.EncodeToString(f.md5[:])},
		Metadata:  f.metadata, CreatedAt: apiTime(f.created), ExpiresAt: apiTime(f.created.Add(uploadLifetime)),
		URLs: map[string]string{"get": base + "/files/uploads/" + f.id},
	}
}

// upload returns the live upload with id, or nil.
func (s *Server) upload(id string) *upload {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.files[id]
	if f == nil || !s.cfg.Now().Before(f.created.Add(uploadLifetime)) {
		return nil
	}
	return f
}

func (s *Server) handleUpload(w http.ResponseWriter, r *http.Request) {
	if !s.authorize(w, r) {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxUploadBytes+1<<20)
	if err := r.ParseMultipartForm(32 << 20); err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			writeProblem(w, &problem{Title: "Request too large", Detail: "files must be smaller than 100 MB", Status: http.StatusRequestEntityTooLarge})
			return
		}
		writeProblem(w, badRequest("multipart form: %v", err))
		return
	}
	defer r.MultipartForm.RemoveAll()
	content, header, err := r.FormFile("content")
	if err != nil {
		writeProblem(w, invalidInput("content", "a file part named content is required"))
		return
	}
	data, err := io.ReadAll(io.LimitReader(content, maxUploadBytes))
	content.Close()
	if err != nil {
		writeProblem(w, badRequest("read content: %v", err))
		return
	}
	if len(data) >= maxUploadBytes {
		writeProblem(w, &problem{Title: "Request too large", Detail: "files must be smaller than 100 MB", Status: http.StatusRequestEntityTooLarge})
		return
	}
	name := r.FormValue("filename")
	if name == "" {
		name = header.Filename
	}
	if len(name) > 255 {
		writeProblem(w, invalidInput("filename", "filename must be at most 255 bytes"))
		return
	}
	ctype := r.FormValue("type")
	if ctype == "" {
		ctype = header.Header.Get("Content-Type")
	}
	if ctype == "" || ctype == "application/octet-stream" {
		ctype = http.DetectContentType(data)
	}
	meta := json.RawMessage("{}")
	if v := r.FormValue("metadata"); v != "" {
		if !json.Valid([]byte(v)) {
			writeProblem(w, invalidInput("metadata", "metadata must be JSON"))
			return
		}
		meta = json.RawMessage(v)
	}
	f := &upload{name: name, contentType: ctype, metadata: meta, data: data, sha256: sha256.Sum256(data), md5: md5.Sum(data)}

	s.mu.Lock()
	f.id = s.newIDLocked()
	f.created = s.cfg.Now()
	s.files[f.id] = f
	s.fileSeq = append(s.fileSeq, f)
	s.fileSz += int64(len(data))
	for s.fileSz > maxUploadTotal && len(s.fileSeq) > 1 {
		old := s.fileSeq[0]
		s.fileSeq[0] = nil
		s.fileSeq = s.fileSeq[1:]
		if s.files[old.id] == old {
			delete(s.files, old.id)
			s.fileSz -= int64(len(old.data))
		}
	}
	s.st.Uploads++
	s.mu.Unlock()
	writeJSON(w, http.StatusCreated, "application/json", f.json(baseURL(r)))
}

func (s *Server) handleFileMeta(w http.ResponseWriter, r *http.Request) {
	if !s.authorize(w, r) {
		return
	}
	f := s.upload(r.PathValue("id"))
	if f == nil {
		writeProblem(w, notFound())
		return
	}
	writeJSON(w, http.StatusOK, "application/json", f.json(baseURL(r)))
}

func (s *Server) handleFileDownload(w http.ResponseWriter, r *http.Request) {
	if s.authorize(w, r) {
		s.serveUpload(w, r)
	}
}

func (s *Server) handleUploadContent(w http.ResponseWriter, r *http.Request) { s.serveUpload(w, r) }

func (s *Server) serveUpload(w http.ResponseWriter, r *http.Request) {
	f := s.upload(r.PathValue("id"))
	if f == nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", f.contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(f.data)))
	w.Header().Set("ETag", fmt.Sprintf("%q", hex.EncodeToString(f.md5[:])))
	_, _ = w.Write(f.data)
}

func (s *Server) handleFileDelete(w http.ResponseWriter, r *http.Request) {
	if !s.authorize(w, r) {
		return
	}
	s.mu.Lock()
	f, ok := s.files[r.PathValue("id")]
	if ok {
		delete(s.files, f.id)
		s.fileSz -= int64(len(f.data))
	}
	s.mu.Unlock()
	if !ok {
		writeProblem(w, notFound())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
