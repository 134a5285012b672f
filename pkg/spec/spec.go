package spec

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"time"

	"github.com/likeness-run/likeness/pkg/provider"
)

// Version is the spec format version this package reads.
const Version = 1

// Defaults and limits of the numeric settings.
const (
	DefaultVariants      = 1
	MaxVariants          = 100
	MaxSeed              = 2147483647 // providers take a signed 32-bit seed
	DefaultOutputRetries = 2
	MaxOutputRetries     = 10
	DefaultMaxAttempts   = 5
	MaxMaxAttempts       = 25
	MaxTags              = 20
	// DefaultInfraRetryFor is how long a task rides out faults of
	// likeness's own infrastructure (Redis, the bucket, dead workers)
	// before it ends failed with class INFRA; Min and Max bound the spec's
	// infra_retry_for.
	DefaultInfraRetryFor = 6 * time.Hour
	MinInfraRetryFor     = time.Minute
	MaxInfraRetryFor     = 7 * 24 * time.Hour
	MaxPromptLen         = 4000     // characters, after trimming
	MaxReferenceSize     = 20 << 20 // bytes
)

// Models resolves a "provider:name" model reference and validates its
// params. *provider.Registry implements it. Resolve returns
// *provider.RefError for an unknown model and *provider.ParamError for a bad
// parameter; the returned Model is used, when it is set, to refuse secret
// parameters before their values are checked or echoed in a message.
type Models interface {
	Resolve(ref string, params map[string]any) (provider.Model, error)
}

// Spec is a loaded, validated spec. Build one with Load, LoadFile or Parse;
// a Spec from those functions is always valid.
type Spec struct {
	// File is the spec's name as given to the loader, used in messages.
	File string
	// Raw is the spec exactly as read, for storing as submitted.
	Raw []byte

	// Version is the format version; always Version.
	Version int
	// Name identifies the spec (an id, see CheckID); it is part of run ids.
	Name string
	// Characters, Prompts and Models are in spec order, which is the order
	// of Expand. Each list has at least one entry and unique ids.
	Characters []Character
	Prompts    []Prompt
	Models     []Model
	// Variants is the number of outputs per (character, prompt, model);
	// default DefaultVariants.
	Variants int
	// Seed is the base seed every task seed is derived from; default 0.
	Seed int64
	// BudgetUSD is the run's hard cost cap; 0 means no cap.
	BudgetUSD float64
	// OutputRetries is how many extra attempts a bad or moderated output
	// gets; default DefaultOutputRetries.
	OutputRetries int
	// MaxAttempts is the attempts per task for transient failures; default
	// DefaultMaxAttempts.
	MaxAttempts int
	// InfraRetryFor is how long infrastructure faults are retried, by the
	// wall clock, before a task ends failed (class INFRA); default
	// DefaultInfraRetryFor. It does not change outputs, so it is not part
	// of the run id.
	InfraRetryFor time.Duration
	// Tags configures topic tags for prompts; the zero value is off.
	Tags Tags
	// Sheets configures the character sheets drawn at the end of the run;
	// the zero value shows variant 0.
	Sheets Sheets
}

// Character is one person to keep consistent, with a single reference image.
type Character struct {
	ID        string
	Reference Reference
}

// Reference is a character's reference image. A local reference is read and
// checked at load time and its bytes are kept; a remote one (an https URL) is
// only checked syntactically.
type Reference struct {
	// Source is the reference as written in the spec.
	Source string
	// Remote is true for an https URL. Remote references carry no bytes:
	// Data, SHA256, ContentType, Ext, Width and Height are zero.
	Remote bool
	// Path is the file's name inside the fs.FS the spec was loaded from.
	Path string
	// Data is the file's content.
	Data []byte
	// SHA256 is the hex sha256 of Data, the reference's content address.
	SHA256 string
	// ContentType is sniffed from the content: image/png, image/jpeg or
	// image/webp.
	ContentType string
	// Ext is the extension matching the content: png, jpg or webp.
	Ext string
	// Width and Height are the image's size in pixels.
	Width, Height int
}

// Prompt is one instruction applied to every character.
type Prompt struct {
	ID string
	// Text is the prompt with surrounding white space trimmed.
	Text string
	// Edit, when set, makes the prompt an inpainting edit: every model of
	// the spec repaints the mask's area of Edit.Image with the character,
	// as the text says, instead of composing a new picture from the
	// reference. Every model must support it (provider.Model.Inpainting).
	Edit *Edit
}

// Edit is an image to repaint and its mask. The mask has the image's size;
// its white (non-black) pixels are repainted and its black pixels kept,
// whatever the provider's own convention (adapters convert it).
type Edit struct {
	Image, Mask Reference
}

// Model is one model to run every prompt on.
type Model struct {
	// ID is the model's id in the spec, used in object keys.
	ID string
	// Ref is the registry reference, "provider:name".
	Ref string
	// Provider is the provider part of Ref.
	Provider string
	// Params are the model's inputs: JSON-able values (int, float64,
	// string, bool, nil, []any, map[string]any). Never nil.
	Params map[string]any
	// Info is the registry entry Ref resolved to: prices, limits, params.
	Info provider.Model
}

// Tags configures topic tags for each prompt.
type Tags struct {
	// NumberOfTags is how many tags to ask for; 0 turns tagging off.
	NumberOfTags int
}

// LoadFile reads the spec at the OS path name and loads it with Load. Local
// references are read below the spec's directory through an os.Root, so
// neither ".." nor a symbolic link can reach outside it. Messages name the
// file as given. A nil models means provider.DefaultRegistry().
func LoadFile(name string, models Models) (*Spec, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, Errors{{File: name, Msg: readMessage(err), Err: err}}
	}
	root, err := os.OpenRoot(filepath.Dir(name))
	if err != nil {
		return nil, Errors{{File: name, Msg: fmt.Sprintf("cannot open the spec's directory: %v", err), Err: err}}
	}
	defer root.Close()
	return parse(name, data, root.FS(), ".", models)
}

// Load reads the spec name from fsys, validates it and reads its local
// references, which are resolved relative to the spec's directory inside
// fsys and must stay below it. Bad input of any kind is reported as an
// Errors holding every problem found. A nil models means
// provider.DefaultRegistry().
func Load(fsys fs.FS, name string, models Models) (*Spec, error) {
	data, err := fs.ReadFile(fsys, name)
	if err != nil {
		return nil, Errors{{File: name, Msg: readMessage(err), Err: err}}
	}
	return parse(name, data, fsys, path.Dir(name), models)
}

// Parse validates spec data that did not come from a file system, such as an
// upload. Local references are resolved relative to the root of refs; a nil
// refs allows only https references. file names the spec in messages. A nil
// models means provider.DefaultRegistry().
func Parse(file string, data []byte, refs fs.FS, models Models) (*Spec, error) {
	return parse(file, data, refs, ".", models)
}

func readMessage(err error) string {
	if errors.Is(err, fs.ErrNotExist) {
		return "cannot read the spec: file does not exist"
	}
	return fmt.Sprintf("cannot read the spec: %v", err)
}

// Digest returns the hex sha256 of the content that determines the outputs:
// name, characters with their reference's sha256 (or URL), prompts, models
// with their params, variants, seed, output retries, max attempts, tags and
// a non-default sheets setting (asking for other sheets makes a new run,
// whose outputs come from the cache). Formatting, comments, key order and the budget do not change it.
func (s *Spec) Digest() string {
	type character struct {
		ID        string `json:"id"`
		Reference string `json:"reference"`
	}
	type prompt struct {
		ID    string `json:"id"`
		Text  string `json:"text"`
		Image string `json:"image,omitempty"`
		Mask  string `json:"mask,omitempty"`
	}
	type model struct {
		ID     string         `json:"id"`
		Model  string         `json:"model"`
		Params map[string]any `json:"params"`
	}
	c := struct {
		Version       int         `json:"version"`
		Name          string      `json:"name"`
		Characters    []character `json:"characters"`
		Prompts       []prompt    `json:"prompts"`
		Models        []model     `json:"models"`
		Variants      int         `json:"variants"`
		Seed          int64       `json:"seed"`
		OutputRetries int         `json:"output_retries"`
		MaxAttempts   int         `json:"max_attempts"`
		Tags          int         `json:"number_of_tags"`
		Sheets        string      `json:"sheets,omitempty"`
	}{
		Version: s.Version, Name: s.Name,
		Variants: s.Variants, Seed: s.Seed, OutputRetries: s.OutputRetries,
		MaxAttempts: s.MaxAttempts, Tags: s.Tags.NumberOfTags, Sheets: s.Sheets.digest(),
	}
	for _, ch := range s.Characters {
		c.Characters = append(c.Characters, character{ID: ch.ID, Reference: ch.Reference.identity()})
	}
	for _, p := range s.Prompts {
		pr := prompt{ID: p.ID, Text: p.Text}
		if p.Edit != nil {
			pr.Image, pr.Mask = p.Edit.Image.identity(), p.Edit.Mask.identity()
		}
		c.Prompts = append(c.Prompts, pr)
	}
	for _, m := range s.Models {
		c.Models = append(c.Models, model{ID: m.ID, Model: m.Ref, Params: m.Params})
	}
	// encoding/json writes map keys sorted, at every depth, so equal params
	// encode equally.
	b, err := json.Marshal(c)
	if err != nil {
		// Params hold only JSON-able values (the parser guarantees it).
		panic(fmt.Sprintf("spec: encode digest: %v", err))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// identity is what names an image's content in a digest: its sha256, or its
// URL when it is remote.
func (r Reference) identity() string {
	if r.Remote {
		return r.Source
	}
	return "sha256:" + r.SHA256
}

// Character returns the character with the given id.
func (s *Spec) Character(id string) (Character, bool) {
	for _, c := range s.Characters {
		if c.ID == id {
			return c, true
		}
	}
	return Character{}, false
}
