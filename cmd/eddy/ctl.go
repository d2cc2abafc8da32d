package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/eddy-iot/eddy/actors"
	"github.com/eddy-iot/eddy/control"
	"github.com/eddy-iot/eddy/control/client"
	"github.com/eddy-iot/eddy/operators"
)

// ctlOptions are the flags shared by every `eddy ctl` subcommand.
type ctlOptions struct {
	addr      string
	tokenFile string
	caFile    string
	output    string
	timeout   time.Duration
}

func (o *ctlOptions) client() (*client.Client, error) {
	if o.output != "table" && o.output != "json" {
		return nil, fmt.Errorf("-o %q: want table or json", o.output)
	}
	cfg := client.Config{Addrs: strings.Split(o.addr, ","), RetryTimeout: o.timeout, FailFastRefused: true}
	token, err := readToken("--token-file", o.tokenFile)
	if err != nil {
		return nil, err
	}
	cfg.Token = token
	tc, err := o.tlsConfig()
	if err != nil {
		return nil, err
	}
	cfg.TLS = tc
	return client.New(cfg)
}

// tlsConfig is the client TLS configuration of --ca (nil without it: the
// system roots).
func (o *ctlOptions) tlsConfig() (*tls.Config, error) {
	if o.caFile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(o.caFile)
	if err != nil {
		return nil, fmt.Errorf("--ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--ca %s holds no PEM certificate", o.caFile)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

func (o *ctlOptions) json() bool { return o.output == "json" }

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// requireSubcommands makes every command below c that only groups
// subcommands (no Run of its own) fail, listing the valid ones, when it is
// called without one or with an unknown one (cobra prints help and exits 0).
func requireSubcommands(c *cobra.Command) {
	for _, sub := range c.Commands() {
		requireSubcommands(sub)
	}
	if !c.HasParent() || !c.HasSubCommands() || c.Run != nil || c.RunE != nil {
		return
	}
	c.Args = cobra.ArbitraryArgs
	c.RunE = func(cmd *cobra.Command, args []string) error {
		var names []string
		for _, s := range cmd.Commands() {
			if s.IsAvailableCommand() {
				names = append(names, s.Name())
			}
		}
		if len(args) == 0 {
			return fmt.Errorf("%s needs a subcommand: %s (see %s --help)", cmd.CommandPath(), strings.Join(names, ", "), cmd.CommandPath())
		}
		return fmt.Errorf("unknown command %q for %q; valid: %s", args[0], cmd.CommandPath(), strings.Join(names, ", "))
	}
}

// newCtlCmd is `eddy ctl`: a client of the control-plane HTTP API.
func newCtlCmd() *cobra.Command {
	o := &ctlOptions{}
	defAddr := os.Getenv("EDDY_ADDR")
	if defAddr == "" {
		defAddr = "http://127.0.0.1:8080"
	}
	cmd := &cobra.Command{
		Use:   "ctl",
		Short: "Control-plane client: jobs, partitions, checkpoints, configuration keys, members, Raft",
		Long: `eddy ctl talks to the HTTP API of any cluster node (followers forward writes
and consistent reads to the leader). Exit status is 0 on success, 1 on error.
Output is a table for people; -o json for scripts.

  eddy ctl config put devices/17079 '{"company":"acme","site":"dyce","threshold":40}'
  eddy ctl config get devices/17079 --consistent
  eddy ctl config list --prefix devices/
  eddy ctl config watch devices/
  eddy ctl job submit deploy/jobs/iot-work.yaml --partitions 12
  eddy ctl partitions
  eddy ctl checkpoints
  eddy ctl savepoint create iot-work
  eddy ctl leases --history
  eddy ctl members
  eddy ctl raft`,
		Args: cobra.NoArgs,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&o.addr, "addr", defAddr, "node URL(s), comma-separated; env EDDY_ADDR")
	pf.StringVar(&o.tokenFile, "token-file", "", "file with the API bearer token that writes need (the nodes' --api-token-file); default env EDDY_TOKEN or EDDY_API_TOKEN")
	pf.StringVar(&o.caFile, "ca", "", "PEM file of the CA that signed the nodes' certificates, for https:// addresses (default the system roots)")
	pf.StringVarP(&o.output, "output", "o", "table", "output format: table or json")
	pf.DurationVar(&o.timeout, "timeout", 10*time.Second, "how long to retry while the cluster has no leader")
	cmd.AddCommand(newCtlConfigCmd(o), newCtlMembersCmd(o), newCtlRaftCmd(o), newCtlLeaveCmd(o), newCtlDevicesCmd(o),
		newCtlJobCmd(o), newCtlPartitionsCmd(o), newCtlCheckpointsCmd(o), newCtlSavepointCmd(o), newCtlLeasesCmd(o))
	return cmd
}

func newCtlConfigCmd(o *ctlOptions) *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Read and write configuration keys", Args: cobra.NoArgs}

	var file string
	var cas int64
	put := &cobra.Command{
		Use:   "put KEY [VALUE | --file F]",
		Short: "Write a key (with --cas REV: only if its revision is REV; 0 = only if absent)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			var value []byte
			switch {
			case len(args) == 2 && file != "":
				return errors.New("give VALUE or --file, not both")
			case len(args) == 2:
				value = []byte(args[1])
			case file == "-":
				value, err = io.ReadAll(cmd.InOrStdin())
			case file != "":
				value, err = os.ReadFile(file)
			default:
				return errors.New("missing VALUE (or --file F, - for stdin)")
			}
			if err != nil {
				return err
			}
			var e control.KVEntry
			if cmd.Flags().Changed("cas") {
				if cas < 0 {
					return errors.New("--cas must be >= 0")
				}
				e, err = c.CAS(cmd.Context(), args[0], value, uint64(cas))
			} else {
				e, err = c.Put(cmd.Context(), args[0], value)
			}
			if err != nil {
				return err
			}
			if o.json() {
				return printJSON(cmd.OutOrStdout(), e)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s written at revision %d\n", e.Key, e.ModifyIndex)
			return nil
		},
	}
	put.Flags().StringVar(&file, "file", "", "read the value from this file (- = stdin)")
	put.Flags().Int64Var(&cas, "cas", 0, "compare-and-set: expected revision (0 = key must not exist)")

	var consistent bool
	get := &cobra.Command{
		Use:   "get KEY",
		Short: "Read a key (table output prints the value alone)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			e, err := c.Get(cmd.Context(), args[0], client.ReadOptions{Consistent: consistent})
			if err != nil {
				return err
			}
			if o.json() {
				return printJSON(cmd.OutOrStdout(), e)
			}
			fmt.Fprintln(cmd.OutOrStdout(), e.Value)
			return nil
		},
	}
	get.Flags().BoolVar(&consistent, "consistent", false, "linearizable read, verified by the leader")

	var delCAS int64
	del := &cobra.Command{
		Use:     "del KEY",
		Aliases: []string{"delete", "rm"},
		Short:   "Delete a key (with --cas REV: only if its revision is REV)",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			var r control.DeleteResult
			if cmd.Flags().Changed("cas") {
				r, err = c.DeleteCAS(cmd.Context(), args[0], uint64(delCAS))
			} else {
				r, err = c.Delete(cmd.Context(), args[0])
			}
			if err != nil {
				return err
			}
			if o.json() {
				return printJSON(cmd.OutOrStdout(), r)
			}
			if r.Deleted {
				fmt.Fprintf(cmd.OutOrStdout(), "%s deleted\n", r.Key)
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "%s did not exist\n", r.Key)
			}
			return nil
		},
	}
	del.Flags().Int64Var(&delCAS, "cas", 0, "compare-and-delete: expected revision")

	var prefix string
	var listConsistent bool
	list := &cobra.Command{
		Use:   "list [--prefix P]",
		Short: "List keys",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			l, err := c.List(cmd.Context(), prefix, client.ReadOptions{Consistent: listConsistent})
			if err != nil {
				return err
			}
			if o.json() {
				return printJSON(cmd.OutOrStdout(), l)
			}
			printEntries(cmd.OutOrStdout(), l.Entries)
			return nil
		},
	}
	list.Flags().StringVar(&prefix, "prefix", "", "only keys starting with this prefix")
	list.Flags().BoolVar(&listConsistent, "consistent", false, "linearizable read, verified by the leader")

	watch := &cobra.Command{
		Use:   "watch [PREFIX]",
		Short: "Print the keys under PREFIX, then every change, until interrupted",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			p := ""
			if len(args) == 1 {
				p = args[0]
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return ctlWatch(ctx, c, p, o.json(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.AddCommand(put, get, del, list, watch)
	return cmd
}

func printEntries(w io.Writer, entries []control.KVEntry) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tREVISION\tVALUE")
	for _, e := range entries {
		fmt.Fprintf(tw, "%s\t%d\t%s\n", e.Key, e.ModifyIndex, oneLine(e.Value, 80))
	}
	tw.Flush()
}

func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > max {
		return s[:max-3] + "..."
	}
	return s
}

// ctlWatch prints the entries under prefix, then each change, using
// blocking queries. Transient errors are reported and retried.
func ctlWatch(ctx context.Context, c *client.Client, prefix string, asJSON bool, out, errOut io.Writer) error {
	var index uint64
	var prev map[string]control.KVEntry
	for {
		l, err := c.Watch(ctx, prefix, index, 5*time.Minute)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			if errors.Is(err, control.ErrInvalid) {
				return err
			}
			fmt.Fprintf(errOut, "watch: %v (retrying)\n", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
			continue
		}
		if l.Index < index { // another node, or a restore: start over
			index = 0
			continue
		}
		if l.Index == index {
			continue
		}
		index = l.Index
		cur := make(map[string]control.KVEntry, len(l.Entries))
		for _, e := range l.Entries {
			cur[e.Key] = e
		}
		if asJSON {
			if err := json.NewEncoder(out).Encode(l); err != nil {
				return err
			}
		} else if prev == nil {
			printEntries(out, l.Entries)
		} else {
			printChanges(out, prev, cur)
		}
		prev = cur
	}
}

func printChanges(w io.Writer, prev, cur map[string]control.KVEntry) {
	var keys []string
	for k := range prev {
		keys = append(keys, k)
	}
	for k := range cur {
		if _, ok := prev[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	ts := time.Now().Format("15:04:05.000")
	for _, k := range keys {
		p, had := prev[k]
		c, has := cur[k]
		switch {
		case had && !has:
			fmt.Fprintf(w, "%s DELETE %s\n", ts, k)
		case !had && has:
			fmt.Fprintf(w, "%s PUT    %s @%d %s\n", ts, k, c.ModifyIndex, oneLine(c.Value, 80))
		case p.ModifyIndex != c.ModifyIndex:
			fmt.Fprintf(w, "%s PUT    %s @%d %s\n", ts, k, c.ModifyIndex, oneLine(c.Value, 80))
		}
	}
}

func newCtlMembersCmd(o *ctlOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "members",
		Short: "List cluster members as seen by the node",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			ms, err := c.Members(cmd.Context())
			if err != nil {
				return err
			}
			if o.json() {
				return printJSON(cmd.OutOrStdout(), ms)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTATUS\tRAFT\tLEADER\tHTTP\tRAFT ADDR\tGOSSIP")
			for _, m := range ms {
				leader := ""
				if m.Leader {
					leader = "*"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.ID, m.Status, m.Raft, leader, m.HTTPAddr, m.RaftAddr, m.GossipAddr)
			}
			return tw.Flush()
		},
	}
}

func newCtlRaftCmd(o *ctlOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "raft [promote|remove ID]",
		Short: "Show Raft state (leader, voters, non-voters, indexes); promote or remove servers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			st, err := c.Raft(cmd.Context())
			if err != nil {
				return err
			}
			if o.json() {
				return printJSON(cmd.OutOrStdout(), st)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			leader := st.LeaderID
			if leader == "" {
				leader = "(none)"
			}
			rows := [][2]string{
				{"node", st.ID + " (" + st.State + ")"},
				{"leader", leader},
				{"term", strconv.FormatUint(st.Term, 10)},
				{"voters", serverList(st.Voters)},
				{"non-voters", serverList(st.NonVoters)},
				{"voter target", strconv.Itoa(st.VoterTarget)},
				{"last index", strconv.FormatUint(st.LastIndex, 10)},
				{"commit index", strconv.FormatUint(st.CommitIndex, 10)},
				{"applied index", strconv.FormatUint(st.AppliedIndex, 10)},
				{"first log index", strconv.FormatUint(st.FirstIndex, 10)},
				{"last snapshot index", strconv.FormatUint(st.LastSnapshotIndex, 10)},
				{"fsm keys", strconv.Itoa(st.FSMKeys)},
			}
			for _, r := range rows {
				fmt.Fprintf(tw, "%s\t%s\n", r[0], r[1])
			}
			return tw.Flush()
		},
	}
	op := func(use, short string, fn func(*client.Client, context.Context, string) error) *cobra.Command {
		return &cobra.Command{
			Use:   use + " ID",
			Short: short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := o.client()
				if err != nil {
					return err
				}
				if err := fn(c, cmd.Context(), args[0]); err != nil {
					return err
				}
				if o.json() {
					return printJSON(cmd.OutOrStdout(), map[string]any{"id": args[0], "ok": true})
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %s done\n", args[0], use)
				return nil
			},
		}
	}
	cmd.AddCommand(
		op("promote", "Make a non-voter a voter", (*client.Client).Promote),
		op("remove", "Remove a server (gone for good) from the Raft configuration", (*client.Client).RemoveServer),
	)
	return cmd
}

func serverList(s []control.RaftServer) string {
	if len(s) == 0 {
		return "-"
	}
	parts := make([]string, len(s))
	for i, v := range s {
		parts[i] = v.ID + "@" + v.Address
	}
	return strings.Join(parts, ", ")
}

func newCtlLeaveCmd(o *ctlOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "leave",
		Short: "Make the node at --addr leave the cluster for good and stop",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			if err := c.Leave(cmd.Context()); err != nil {
				return err
			}
			if o.json() {
				return printJSON(cmd.OutOrStdout(), map[string]any{"left": true})
			}
			fmt.Fprintln(cmd.OutOrStdout(), "node left the cluster")
			return nil
		},
	}
}

func newCtlDevicesCmd(o *ctlOptions) *cobra.Command {
	cmd := &cobra.Command{Use: "devices", Short: "Broadcast device data (devices/<pboxid> keys)", Args: cobra.NoArgs}
	cmd.AddCommand(&cobra.Command{
		Use:   "import FILE",
		Short: "Write every device of a JSON/YAML device file (as eddy run --devices reads) to devices/<pboxid>",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			devices, err := operators.LoadDevices(data)
			if err != nil {
				return err
			}
			ids := make([]string, 0, len(devices))
			for id := range devices {
				ids = append(ids, id)
			}
			sort.Strings(ids)
			for _, id := range ids {
				v, err := json.Marshal(devices[id])
				if err != nil {
					return err
				}
				if _, err := c.Put(cmd.Context(), control.DevicesPrefix+id, v); err != nil {
					return fmt.Errorf("device %s: %w", id, err)
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d devices written\n", len(ids))
			return nil
		},
	})
	return cmd
}

func newCtlJobCmd(o *ctlOptions) *cobra.Command {
	cmd := &cobra.Command{Use: "job", Short: "Submit, list, show, wait for and cancel jobs (specs and states stored in Raft, run by every node on the partitions it owns)", Args: cobra.NoArgs}

	var partitions int32
	var name string
	var allowReset bool
	var fromSavepoint uint64
	submit := &cobra.Command{
		Use:   "submit FILE [--partitions N] [--from-savepoint ID]",
		Short: "Validate a YAML job spec and store it; every node then runs the partitions placement gives it",
		Long: `Sends the job spec to the node, which validates it (spec.Load, as eddy
run and every node that runs it do: unknown fields, durations, sink URLs,
${NAME} references against the node's environment) and refuses a bad one
with HTTP 400 naming the field; a good one is stored in Raft under its name
(the spec's name:, or --name). Every node runs the device partitions that
placement gives it. --partitions is the partition count of the source topic;
without it the nodes ask the source. Submitting a job that exists is a new
revision: every node drains its partitions of the job, snapshots them and
restarts them with the new spec (eddy ctl job get shows each partition's
revision). A revision whose keyed state is incompatible with the checkpoints
(window kind or size, slide, gap, out-of-orderness, allowed lateness, max
gap changed) is refused unless --allow-state-reset. --from-savepoint ID
starts every partition from that savepoint of the job (eddy ctl savepoint
list JOB): its offsets and state; the job may have been cancelled since.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if partitions < 0 || partitions > control.MaxPartitions {
				return fmt.Errorf("--partitions %d: want 0..%d (0 = ask the source)", partitions, control.MaxPartitions)
			}
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			if name == "" {
				// The node validates the whole spec (with its own
				// environment for ${NAME}); here only its name is read.
				var head struct {
					Name string `yaml:"name"`
				}
				// Unreadable YAML: the node refuses it with the reason.
				_ = yaml.Unmarshal(data, &head)
				if name = head.Name; name == "" {
					name = actors.DefaultConfig().Name
				}
			}
			if err := control.ValidateName("job", name); err != nil {
				return fmt.Errorf("job name: %w (set name: in the spec or --name)", err)
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			j, err := c.SubmitJobWith(cmd.Context(), name, data, client.SubmitOptions{Partitions: partitions, AllowStateReset: allowReset, FromSavepoint: fromSavepoint})
			if err != nil {
				return err
			}
			if o.json() {
				return printJSON(cmd.OutOrStdout(), j)
			}
			count := "from the source"
			if j.Partitions > 0 {
				count = strconv.Itoa(int(j.Partitions))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "job %s submitted at revision %d (partitions: %s)\n", j.Name, j.ModifyIndex, count)
			return nil
		},
	}
	submit.Flags().Int32Var(&partitions, "partitions", 0, "partition count of the job's source topic (0 = the nodes ask the source)")
	submit.Flags().StringVar(&name, "name", "", "job name (default: the spec's name)")
	submit.Flags().Uint64Var(&fromSavepoint, "from-savepoint", 0, "start every partition from this savepoint of the job (its id, see eddy ctl savepoint list JOB) instead of the newest checkpoint")
	submit.Flags().BoolVar(&allowReset, "allow-state-reset", false, "accept an update whose keyed state (windows, out-of-orderness, lateness, max gap) is incompatible with the checkpoints, by dropping them: the partitions start again from source.start_offset")

	list := &cobra.Command{
		Use:   "list",
		Short: "List jobs with their state (cancelled ones too)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			jobs, err := c.JobInfos(cmd.Context())
			if err != nil {
				return err
			}
			if o.json() {
				return printJSON(cmd.OutOrStdout(), jobs)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSTATE\tPARTITIONS\tREVISION\tCREATED AT")
			for _, j := range jobs {
				count := "source"
				if j.Status != nil && j.Status.PartitionCount > 0 {
					count = strconv.Itoa(int(j.Status.PartitionCount))
				}
				rev := "-"
				if j.ModifyIndex > 0 {
					rev = strconv.FormatUint(j.ModifyIndex, 10)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", j.Name, j.State, count, rev, j.CreateIndex)
			}
			return tw.Flush()
		},
	}

	var showSpec bool
	get := &cobra.Command{
		Use:   "get NAME [--spec]",
		Short: "Show a job's state and every partition's (running, finished at offset N, failed with the error), or its spec",
		Long: `Shows the job's state (submitted, running, finished, failed, cancelled) and
the last report of each partition from Raft: state, holder and lease epoch,
spec revision, offset (the end offset for finished), restarts and the last
error with its time. Passwords are masked. --spec prints the spec instead.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			j, err := c.JobInfo(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if o.json() {
				return printJSON(cmd.OutOrStdout(), j)
			}
			w := cmd.OutOrStdout()
			if showSpec {
				fmt.Fprint(w, j.Spec)
				if !strings.HasSuffix(j.Spec, "\n") {
					fmt.Fprintln(w)
				}
				return nil
			}
			printJobInfo(w, j)
			return nil
		},
	}
	get.Flags().BoolVar(&showSpec, "spec", false, "print the stored spec (passwords masked) instead of the status")

	var waitFor string
	var waitTimeout time.Duration
	wait := &cobra.Command{
		Use:   "wait NAME [--for finished|running] [--timeout D]",
		Short: "Wait until a job is finished (or running); exit 1 if it fails or is cancelled",
		Long: `Polls the job's state until it is --for (finished, the default, or running;
a finished job counts as running). Exits 0 then; exits 1 at once when the job
is failed (the error of its failed partitions is printed) or cancelled, or
when --timeout passes (0 = no limit).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if waitFor != control.JobFinished && waitFor != control.JobRunning {
				return fmt.Errorf("--for %q: want finished or running", waitFor)
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if waitTimeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, waitTimeout)
				defer cancel()
			}
			last := ""
			for {
				j, err := c.JobInfo(ctx, args[0])
				if err != nil && ctx.Err() == nil {
					return err
				}
				if err == nil {
					if j.State != last && !o.json() {
						fmt.Fprintf(cmd.ErrOrStderr(), "job %s: %s\n", args[0], j.State)
					}
					last = j.State
					switch {
					case j.State == waitFor, waitFor == control.JobRunning && j.State == control.JobFinished:
						if o.json() {
							return printJSON(cmd.OutOrStdout(), j)
						}
						fmt.Fprintf(cmd.OutOrStdout(), "job %s %s\n", args[0], j.State)
						return nil
					case j.State == control.JobFailed:
						return fmt.Errorf("job %s failed: %s", args[0], failedPartitions(j))
					case j.State == control.JobCancelled:
						return fmt.Errorf("job %s was cancelled", args[0])
					}
				}
				select {
				case <-ctx.Done():
					return fmt.Errorf("job %s: still %s after --timeout %s", args[0], last, waitTimeout)
				case <-time.After(250 * time.Millisecond):
				}
			}
		},
	}
	wait.Flags().StringVar(&waitFor, "for", control.JobFinished, "state to wait for: finished or running")
	wait.Flags().DurationVar(&waitTimeout, "timeout", 0, "give up (exit 1) after this long; 0 = wait forever")

	cancel := &cobra.Command{
		Use:   "cancel NAME",
		Short: "Cancel a job: it stops on every node (partitions drained, leases released); its rows stay in the sinks",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			if err := c.CancelJob(cmd.Context(), args[0]); err != nil {
				return err
			}
			if o.json() {
				return printJSON(cmd.OutOrStdout(), map[string]any{"name": args[0], "cancelled": true})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "job %s cancelled\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(submit, list, get, wait, cancel)
	return cmd
}

// printJobInfo prints a job's state and its partitions' reports.
func printJobInfo(w io.Writer, j control.JobInfo) {
	st := j.Status
	if st == nil {
		st = &control.JobStatus{}
	}
	fmt.Fprintf(w, "job %s: %s (revision %d", j.Name, j.State, st.Revision)
	if st.SubmittedMs > 0 {
		fmt.Fprintf(w, ", submitted %s", msTime(st.SubmittedMs))
	}
	if st.CancelledMs > 0 {
		fmt.Fprintf(w, ", cancelled %s", msTime(st.CancelledMs))
	}
	count := "from the source, not known yet"
	if st.PartitionCount > 0 {
		count = strconv.Itoa(int(st.PartitionCount))
	}
	fmt.Fprintf(w, "; partitions: %s)\n", count)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION\tSTATE\tOWNER\tEPOCH\tREVISION\tOFFSET\tRESTARTS\tLAST ERROR")
	for _, p := range st.Partitions {
		errText := "-"
		if p.Error != "" {
			errText = msTime(p.ErrorMs) + " " + oneLine(p.Error, 200)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%d\t%d\t%s\n", p.Partition, p.State, p.Owner, p.Epoch, p.Revision, p.Offset, p.Restarts, errText)
	}
	tw.Flush()
}

func msTime(ms int64) string {
	if ms <= 0 {
		return "-"
	}
	return time.UnixMilli(ms).UTC().Format("2006-01-02 15:04:05")
}

// failedPartitions describes the failed partitions of j and their errors.
func failedPartitions(j control.JobInfo) string {
	var parts []string
	if j.Status != nil {
		for _, p := range j.Status.Partitions {
			if p.State == control.PartitionFailed {
				parts = append(parts, fmt.Sprintf("partition %d (%s, epoch %d): %s", p.Partition, p.Owner, p.Epoch, p.Error))
			}
		}
	}
	if len(parts) == 0 {
		return "no partition details"
	}
	return strings.Join(parts, "; ")
}

func newCtlPartitionsCmd(o *ctlOptions) *cobra.Command {
	var job string
	cmd := &cobra.Command{
		Use:   "partitions [--job J]",
		Short: "Show every device partition: owner, epoch, state, offset, lag and watermark",
		Long: `Shows every partition of every job (or of --job): the lease holder and epoch from
Raft, the owner placement wants, and what the holder reports (state, next
source offset, lag in records, watermark). The answering node gathers the
reports from every live member. States besides the holder's own (running,
starting, handing_off, stopping): unowned, released, owner_down, unreachable,
unreported.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			ps, err := c.Partitions(cmd.Context(), job)
			if err != nil {
				return err
			}
			if o.json() {
				return printJSON(cmd.OutOrStdout(), ps)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "JOB\tPARTITION\tOWNER\tEPOCH\tSTATE\tOFFSET\tLAG\tWATERMARK\tDESIRED")
			for _, p := range ps {
				owner, epoch := p.Owner, strconv.FormatUint(p.Epoch, 10)
				if owner == "" {
					owner, epoch = "-", "-"
				}
				offset, lag, wm := "-", "-", "-"
				if pr := p.Progress; pr != nil {
					offset = strconv.FormatInt(pr.Offset, 10)
					if pr.Lag >= 0 {
						lag = strconv.FormatInt(pr.Lag, 10)
					}
					if pr.WatermarkMs > 0 {
						wm = time.UnixMilli(pr.WatermarkMs).UTC().Format("2006-01-02 15:04:05")
					}
				}
				desired := p.Desired
				if desired == "" {
					desired = "-"
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Job, p.Partition, owner, epoch, p.State, offset, lag, wm, desired)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&job, "job", "", "only this job")
	return cmd
}

func newCtlCheckpointsCmd(o *ctlOptions) *cobra.Command {
	var job string
	cmd := &cobra.Command{
		Use:   "checkpoints [--job J]",
		Short: "List the retained checkpoints: id, acknowledged partitions, state (complete, pending, aborted with the partitions that did not ack)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			cs, err := c.Checkpoints(cmd.Context(), job)
			if err != nil {
				return err
			}
			if o.json() {
				return printJSON(cmd.OutOrStdout(), cs)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "JOB\tID\tSTARTED\tACKED\tSTATE\tMIN OFFSET\tMAX OFFSET")
			for _, cp := range cs {
				started := "-"
				if cp.StartedMs > 0 {
					started = time.UnixMilli(cp.StartedMs).UTC().Format("2006-01-02 15:04:05")
				}
				minOff, maxOff := "-", "-"
				if len(cp.Acks) > 0 {
					lo, hi := cp.Acks[0].Offset, cp.Acks[0].Offset
					for _, a := range cp.Acks[1:] {
						lo, hi = min(lo, a.Offset), max(hi, a.Offset)
					}
					minOff, maxOff = strconv.FormatInt(lo, 10), strconv.FormatInt(hi, 10)
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%d/%d\t%s\t%s\t%s\n", cp.Job, cp.ID, started, len(cp.Acks), cp.Partitions, checkpointState(cp), minOff, maxOff)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&job, "job", "", "only this job")
	return cmd
}

// checkpointState is the STATE column of eddy ctl checkpoints: "complete",
// "pending", or "aborted (missing 1,4: <reason>)".
func checkpointState(cp control.Checkpoint) string {
	switch {
	case cp.Complete:
		return "complete"
	case !cp.Aborted:
		return "pending"
	}
	ps := make([]string, len(cp.Missing))
	for i, p := range cp.Missing {
		ps[i] = strconv.Itoa(int(p))
	}
	return fmt.Sprintf("aborted (missing %s: %s)", strings.Join(ps, ","), cp.AbortReason)
}

func newCtlLeasesCmd(o *ctlOptions) *cobra.Command {
	var job string
	var history bool
	var partition int32
	cmd := &cobra.Command{
		Use:   "leases [--job J] [--history [--partition P]]",
		Short: "Show partition leases (holder, epoch), or with --history every grant, takeover and release",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			if history {
				h, err := c.LeaseHistory(cmd.Context(), job, partition)
				if err != nil {
					return err
				}
				if o.json() {
					return printJSON(cmd.OutOrStdout(), h)
				}
				fmt.Fprintln(tw, "INDEX\tTIME\tJOB\tPARTITION\tEVENT\tOWNER\tEPOCH\tPREVIOUS")
				for _, e := range h {
					at := "-"
					if e.TimeMs > 0 {
						at = time.UnixMilli(e.TimeMs).UTC().Format("15:04:05.000")
					}
					prev := e.PrevOwner
					if prev == "" {
						prev = "-"
					}
					fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\t%d\t%s\n", e.Index, at, e.Job, e.Partition, e.Kind, e.Owner, e.Epoch, prev)
				}
				return tw.Flush()
			}
			if cmd.Flags().Changed("partition") {
				return errors.New("--partition needs --history")
			}
			ls, err := c.Leases(cmd.Context(), job)
			if err != nil {
				return err
			}
			if o.json() {
				return printJSON(cmd.OutOrStdout(), ls)
			}
			fmt.Fprintln(tw, "JOB\tPARTITION\tOWNER\tEPOCH\tRELEASED\tHANDOFF OFFSET\tREVISION")
			for _, l := range ls {
				handoff := "-"
				if l.Handoff != nil {
					handoff = fmt.Sprintf("%d (epoch %d)", l.Handoff.Offset, l.Handoff.Epoch)
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%v\t%s\t%d\n", l.Job, l.Partition, l.Owner, l.Epoch, l.Released, handoff, l.ModifyIndex)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&job, "job", "", "only this job")
	cmd.Flags().BoolVar(&history, "history", false, "show the lease history (grants, takeovers, releases) instead")
	cmd.Flags().Int32Var(&partition, "partition", -1, "with --history: only this partition")
	return cmd
}
