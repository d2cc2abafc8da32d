package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"gocloud.dev/blob"
	"gocloud.dev/blob/fileblob"
	"gocloud.dev/blob/memblob"
	"gocloud.dev/blob/s3blob"
	"gocloud.dev/gcerrors"
)

// URLForms lists the checkpoint storage URLs OpenStorage accepts.
const URLForms = `file:///ABS/DIR          a local or mounted directory (created if missing)
s3://BUCKET/PREFIX?region=R   Amazon S3 or an S3-compatible store (gocloud.dev s3blob;
                         credentials from the environment; also endpoint=URL,
                         use_path_style=true, disable_https=true for MinIO)
mem://                   in memory, lost at exit (tests)`

// ErrBadURL is wrapped by OpenStorage errors about the URL itself.
var ErrBadURL = errors.New("checkpoint: bad storage URL")

// ErrNotExist is wrapped by Storage errors about a key that does not exist.
var ErrNotExist = errors.New("checkpoint: no such object")

// Storage is checkpoint storage: a flat key space of immutable objects
// (gocloud.dev/blob), so any node that can reach the same URL reads what
// another wrote. A write becomes visible whole when its writer's Close
// returns nil (fileblob renames a temporary file; S3 puts are atomic), so
// readers never see half an object. Safe for concurrent use.
//
// Durability: file:// does not fsync; an object survives the kill of the
// writing process, not necessarily a power loss of its machine.
type Storage struct {
	b   *blob.Bucket
	url string
}

// OpenStorage opens the storage a URL names (see URLForms). A plain path
// without a scheme is taken as a directory (file://).
func OpenStorage(ctx context.Context, rawURL string) (*Storage, error) {
	bad := func(why string) error {
		return fmt.Errorf("%w %q: %s; valid forms:\n%s", ErrBadURL, rawURL, why, URLForms)
	}
	if rawURL == "" {
		return nil, bad("empty")
	}
	if !strings.Contains(rawURL, "://") {
		abs, err := filepath.Abs(rawURL)
		if err != nil {
			return nil, bad(err.Error())
		}
		rawURL = "file://" + filepath.ToSlash(abs)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, bad(err.Error())
	}
	var b *blob.Bucket
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return nil, bad("file URLs need an absolute path: file:///dir (three slashes), not file://" + u.Host)
		}
		dir := filepath.FromSlash(u.Path)
		if dir == "" || !filepath.IsAbs(dir) {
			return nil, bad("file URLs need an absolute directory")
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("checkpoint: create storage directory: %w", err)
		}
		// Temporary files next to their target (no cross-device rename),
		// no metadata sidecar files.
		b, err = fileblob.OpenBucket(dir, &fileblob.Options{NoTempDir: true, Metadata: fileblob.MetadataDontWrite})
		if err != nil {
			return nil, fmt.Errorf("checkpoint: open %s: %w", dir, err)
		}
	case "s3":
		if u.Host == "" {
			return nil, bad("s3 URLs need a bucket: s3://BUCKET/PREFIX")
		}
		prefix := strings.Trim(u.Path, "/")
		bucketURL := &url.URL{Scheme: "s3", Host: u.Host, RawQuery: u.RawQuery}
		b, err = (&s3blob.URLOpener{}).OpenBucketURL(ctx, bucketURL)
		if err != nil {
			return nil, bad(err.Error())
		}
		if prefix != "" {
			b = blob.PrefixedBucket(b, prefix+"/")
		}
	case "mem":
		b = memblob.OpenBucket(nil)
	default:
		return nil, bad(fmt.Sprintf("unknown scheme %q", u.Scheme))
	}
	return &Storage{b: b, url: rawURL}, nil
}

// URL returns the URL the storage was opened with (plain paths as file://).
func (s *Storage) URL() string { return s.url }

// Close releases the storage. Idempotent.
func (s *Storage) Close() error {
	if s.b == nil {
		return nil
	}
	err := s.b.Close()
	s.b = nil
	return err
}

// NewWriter returns a writer of object key; the object appears when Close
// returns nil. Cancelling ctx before Close discards it.
func (s *Storage) NewWriter(ctx context.Context, key string) (io.WriteCloser, error) {
	w, err := s.b.NewWriter(ctx, key, &blob.WriterOptions{ContentType: "application/octet-stream"})
	if err != nil {
		return nil, fmt.Errorf("checkpoint: write %s: %w", key, err)
	}
	return w, nil
}

// NewReader opens object key; errors wrap ErrNotExist when it is missing.
func (s *Storage) NewReader(ctx context.Context, key string) (io.ReadCloser, error) {
	r, err := s.b.NewReader(ctx, key, nil)
	if err != nil {
		return nil, s.wrap("read", key, err)
	}
	return r, nil
}

// Size returns the size of object key in bytes.
func (s *Storage) Size(ctx context.Context, key string) (int64, error) {
	a, err := s.b.Attributes(ctx, key)
	if err != nil {
		return 0, s.wrap("stat", key, err)
	}
	return a.Size, nil
}

// ReadAll reads object key.
func (s *Storage) ReadAll(ctx context.Context, key string) ([]byte, error) {
	b, err := s.b.ReadAll(ctx, key)
	if err != nil {
		return nil, s.wrap("read", key, err)
	}
	return b, nil
}

// WriteAll writes object key with contents p, atomically.
func (s *Storage) WriteAll(ctx context.Context, key string, p []byte) error {
	if err := s.b.WriteAll(ctx, key, p, nil); err != nil {
		return fmt.Errorf("checkpoint: write %s: %w", key, err)
	}
	return nil
}

// Exists reports whether object key exists.
func (s *Storage) Exists(ctx context.Context, key string) (bool, error) {
	ok, err := s.b.Exists(ctx, key)
	if err != nil {
		return false, fmt.Errorf("checkpoint: stat %s: %w", key, err)
	}
	return ok, nil
}

// Copy copies object src to dst.
func (s *Storage) Copy(ctx context.Context, dst, src string) error {
	if err := s.b.Copy(ctx, dst, src, nil); err != nil {
		return s.wrap("copy", src, err)
	}
	return nil
}

// Delete deletes object key; a missing object is not an error.
func (s *Storage) Delete(ctx context.Context, key string) error {
	err := s.b.Delete(ctx, key)
	if err != nil && gcerrors.Code(err) != gcerrors.NotFound {
		return fmt.Errorf("checkpoint: delete %s: %w", key, err)
	}
	return nil
}

// DeletePrefix deletes every object whose key starts with prefix.
func (s *Storage) DeletePrefix(ctx context.Context, prefix string) error {
	keys, err := s.List(ctx, prefix)
	if err != nil {
		return err
	}
	var errs []error
	for _, k := range keys {
		errs = append(errs, s.Delete(ctx, k))
	}
	return errors.Join(errs...)
}

// List returns the keys of all objects below prefix, sorted.
func (s *Storage) List(ctx context.Context, prefix string) ([]string, error) {
	var keys []string
	it := s.b.List(&blob.ListOptions{Prefix: prefix})
	for {
		o, err := it.Next(ctx)
		if err == io.EOF {
			return keys, nil
		}
		if err != nil {
			return nil, fmt.Errorf("checkpoint: list %s: %w", prefix, err)
		}
		keys = append(keys, o.Key)
	}
}

// ListDirs returns the "directories" directly below prefix (keys up to
// the next '/', without it), sorted.
func (s *Storage) ListDirs(ctx context.Context, prefix string) ([]string, error) {
	var dirs []string
	it := s.b.List(&blob.ListOptions{Prefix: prefix, Delimiter: "/"})
	for {
		o, err := it.Next(ctx)
		if err == io.EOF {
			return dirs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("checkpoint: list %s: %w", prefix, err)
		}
		if o.IsDir {
			dirs = append(dirs, strings.TrimSuffix(strings.TrimPrefix(o.Key, prefix), "/"))
		}
	}
}

func (s *Storage) wrap(op, key string, err error) error {
	if gcerrors.Code(err) == gcerrors.NotFound {
		return fmt.Errorf("%w: %s %s: %v", ErrNotExist, op, key, err)
	}
	return fmt.Errorf("checkpoint: %s %s: %w", op, key, err)
}
