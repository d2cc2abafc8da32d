package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/eddy-iot/eddy/actors"
	"github.com/eddy-iot/eddy/actors/checkpoint"
	"github.com/eddy-iot/eddy/actors/spec"
)

// The savepoint API of a running job, served beside /metrics:
//
//	POST   /v1/savepoints       take a savepoint, answer its manifest when complete
//	                            (?stop=true: then stop the run, as SIGTERM does)
//	GET    /v1/savepoints       list the job's savepoints
//	DELETE /v1/savepoints/{id}  delete one
//	GET    /v1/checkpoints      checkpoint status and every checkpoint/savepoint
func serveCheckpointAPI(mux *http.ServeMux, job *actors.Job, cfg actors.Config, stopRun func()) {
	writeJSON := func(w http.ResponseWriter, code int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(v)
	}
	fail := func(w http.ResponseWriter, code int, err error) {
		writeJSON(w, code, map[string]string{"error": err.Error()})
	}
	catalog := func(ctx context.Context) (*checkpoint.Catalog, func(), error) {
		if !cfg.Checkpoint.Enabled() {
			return nil, nil, actors.ErrNoCheckpoints
		}
		st, err := checkpoint.OpenStorage(ctx, cfg.Checkpoint.Storage)
		if err != nil {
			return nil, nil, err
		}
		return checkpoint.NewCatalog(st, cfg.Name), func() { st.Close() }, nil
	}
	mux.HandleFunc("POST /v1/savepoints", func(w http.ResponseWriter, r *http.Request) {
		stop := false
		if v := r.URL.Query().Get("stop"); v != "" {
			var err error
			if stop, err = strconv.ParseBool(v); err != nil {
				fail(w, http.StatusBadRequest, fmt.Errorf("?stop=%q must be true or false", v))
				return
			}
		}
		m, err := job.Savepoint(r.Context())
		if err == nil && stop {
			defer stopRun() // after the answer is written
		}
		switch {
		case errors.Is(err, actors.ErrNoCheckpoints):
			fail(w, http.StatusConflict, err)
		case errors.Is(err, actors.ErrNotRunning):
			fail(w, http.StatusServiceUnavailable, err)
		case err != nil:
			fail(w, http.StatusInternalServerError, err)
		default:
			writeJSON(w, http.StatusOK, m)
		}
	})
	mux.HandleFunc("GET /v1/savepoints", func(w http.ResponseWriter, r *http.Request) {
		cat, done, err := catalog(r.Context())
		if err != nil {
			fail(w, http.StatusConflict, err)
			return
		}
		defer done()
		es, err := cat.List(r.Context())
		if err != nil {
			fail(w, http.StatusInternalServerError, err)
			return
		}
		out := []*checkpoint.Manifest{}
		for _, e := range es {
			if e.Kind == checkpoint.KindSavepoint && e.Manifest != nil {
				out = append(out, e.Manifest)
			}
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("DELETE /v1/savepoints/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, err := actors.ParseSavepointRef(r.PathValue("id"))
		if err != nil {
			fail(w, http.StatusBadRequest, err)
			return
		}
		cat, done, err := catalog(r.Context())
		if err != nil {
			fail(w, http.StatusConflict, err)
			return
		}
		defer done()
		if _, err := cat.Savepoint(r.Context(), id); err != nil {
			fail(w, http.StatusNotFound, err)
			return
		}
		if err := cat.Delete(r.Context(), checkpoint.KindSavepoint, id); err != nil {
			fail(w, http.StatusInternalServerError, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"deleted": id})
	})
	mux.HandleFunc("GET /v1/checkpoints", func(w http.ResponseWriter, r *http.Request) {
		st := job.CheckpointStatus()
		resp := map[string]any{"status": st}
		if cat, done, err := catalog(r.Context()); err == nil {
			defer done()
			if es, err := cat.List(r.Context()); err == nil {
				resp["checkpoints"] = entriesJSON(es)
			}
		}
		writeJSON(w, http.StatusOK, resp)
	})
}

type entryJSON struct {
	Name     string               `json:"name"`
	Kind     checkpoint.Kind      `json:"kind"`
	ID       uint64               `json:"id"`
	Complete bool                 `json:"complete"`
	Error    string               `json:"error,omitempty"`
	Manifest *checkpoint.Manifest `json:"manifest,omitempty"`
}

func entriesJSON(es []checkpoint.Entry) []entryJSON {
	out := []entryJSON{}
	for _, e := range es {
		j := entryJSON{Name: e.Name(), Kind: e.Kind, ID: e.ID, Complete: e.Manifest != nil, Manifest: e.Manifest}
		if e.Err != nil {
			j.Error = e.Err.Error()
		}
		out = append(out, j)
	}
	return out
}

func newSavepointCmd() *cobra.Command {
	var (
		addr, tokenFile string
		timeout         time.Duration
		stop            bool
	)
	cmd := &cobra.Command{
		Use:   "savepoint",
		Short: "Take a savepoint of a running job; list or delete savepoints",
		Long: `A savepoint is a checkpoint taken on demand and kept until deleted: every
partition's source offset and keyed state (open windows, work periods,
watermark), consistent across partitions. Start a job from one with
eddy run --from-savepoint ID.

eddy savepoint asks the job running with eddy run (its --metrics-addr) to take
one now and waits until it is complete; it sends the job's API token
(--token-file, else $EDDY_TOKEN or $EDDY_API_TOKEN), which eddy run requires. list and delete work on the checkpoint
storage directly, with or without a running job.`,
		Example: `  eddy savepoint --addr 127.0.0.1:9464 --token-file /etc/eddy/api-token
  eddy savepoint --addr 127.0.0.1:9464 --stop
  eddy savepoint list --job deploy/jobs/iot-work.yaml
  eddy savepoint delete 42 --job deploy/jobs/iot-work.yaml
  eddy run --job deploy/jobs/iot-work.yaml --from-savepoint 42`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			token, err := readToken("--token-file", tokenFile)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			uri := "http://" + addr + "/v1/savepoints"
			if stop {
				uri += "?stop=true"
			}
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, uri, nil)
			if err != nil {
				return err
			}
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return fmt.Errorf("no running job answers on %s (eddy run --metrics-addr): %w", addr, err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK {
				var e struct{ Error string }
				_ = json.Unmarshal(body, &e)
				return fmt.Errorf("savepoint failed (%s): %s", resp.Status, e.Error)
			}
			var m checkpoint.Manifest
			if err := json.Unmarshal(body, &m); err != nil {
				return fmt.Errorf("savepoint: bad answer: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "savepoint %d (%s) of job %s complete: %d partitions, %d bytes, took %s\n",
				m.ID, m.Name(), m.Job, len(m.Partitions), m.Bytes(), m.Completed().Sub(m.Started()).Round(time.Millisecond))
			if stop {
				fmt.Fprintln(cmd.OutOrStdout(), "the job stops now (stop with savepoint)")
			}
			fmt.Fprintf(cmd.OutOrStdout(), "start from it with: eddy run --job FILE --from-savepoint %d\n", m.ID)
			return nil
		},
	}
	cmd.Flags().StringVar(&addr, "addr", defaultMetricsAddr, "--metrics-addr of the running eddy run")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "give up after this long")
	cmd.Flags().BoolVar(&stop, "stop", false, "stop with savepoint: the run stops (as on SIGTERM) once the savepoint is complete")
	cmd.Flags().StringVar(&tokenFile, "token-file", "", "file holding the job's API token (eddy run --api-token-file); default $EDDY_TOKEN or $EDDY_API_TOKEN")
	cmd.AddCommand(newSavepointListCmd(), newSavepointDeleteCmd())
	return cmd
}

// catalogFlags name a job's checkpoint storage: a job spec, or a storage
// URL and a job name.
type catalogFlags struct {
	jobFile, storage, name string
}

func (f *catalogFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.jobFile, "job", "", "YAML job spec: its checkpoint.storage and name")
	cmd.Flags().StringVar(&f.storage, "storage", "", "checkpoint storage URL (instead of --job)")
	cmd.Flags().StringVar(&f.name, "name", "iot-work", "job name, with --storage")
}

func (f *catalogFlags) open(ctx context.Context) (*checkpoint.Catalog, func(), error) {
	storage, name := f.storage, f.name
	if f.jobFile != "" {
		_, cfg, err := loadJobSpec(f.jobFile, false, spec.Run)
		if err != nil {
			return nil, nil, err
		}
		if storage == "" {
			storage = cfg.Checkpoint.Storage
		}
		name = cfg.Name
	}
	if storage == "" {
		return nil, nil, errors.New("no checkpoint storage: give --job with checkpoint.storage, or --storage URL")
	}
	st, err := checkpoint.OpenStorage(ctx, storage)
	if err != nil {
		return nil, nil, err
	}
	return checkpoint.NewCatalog(st, name), func() { st.Close() }, nil
}

func newSavepointListCmd() *cobra.Command {
	var f catalogFlags
	var all, asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the savepoints (--all: and checkpoints) of a job",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cat, done, err := f.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			es, err := cat.List(cmd.Context())
			if err != nil {
				return err
			}
			var shown []checkpoint.Entry
			for _, e := range es {
				if all || e.Kind == checkpoint.KindSavepoint {
					shown = append(shown, e)
				}
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(entriesJSON(shown))
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tSTATUS\tCOMPLETED\tPARTITIONS\tBYTES")
			for _, e := range shown {
				status, when, parts, size := "incomplete", "-", "-", "-"
				if e.Err != nil {
					status = "corrupt manifest"
				}
				if m := e.Manifest; m != nil {
					status = "complete"
					if m.Final {
						status = "complete (final)"
					}
					if m.RestoredFrom != "" {
						status = "complete (from " + m.RestoredFrom + ")"
					}
					when = m.Completed().UTC().Format(time.RFC3339)
					parts, size = strconv.Itoa(len(m.Partitions)), strconv.FormatInt(m.Bytes(), 10)
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", e.ID, e.Name(), status, when, parts, size)
			}
			if len(shown) == 0 {
				fmt.Fprintf(tw, "(none in %s for job %s)\n", cat.Storage().URL(), cat.Job())
			}
			return tw.Flush()
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&all, "all", false, "list checkpoints too")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newSavepointDeleteCmd() *cobra.Command {
	var f catalogFlags
	cmd := &cobra.Command{
		Use:   "delete ID...",
		Short: "Delete savepoints of a job",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cat, done, err := f.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			for _, a := range args {
				id, err := actors.ParseSavepointRef(a)
				if err != nil {
					return err
				}
				if _, err := cat.Savepoint(cmd.Context(), id); err != nil {
					return err
				}
				if err := cat.Delete(cmd.Context(), checkpoint.KindSavepoint, id); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "deleted savepoint %d\n", id)
			}
			return nil
		},
	}
	f.register(cmd)
	return cmd
}
