package main

import (
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/eddy-iot/eddy/control"
	"github.com/eddy-iot/eddy/control/client"
)

// newCtlSavepointCmd is eddy ctl savepoint create|list|delete: the
// savepoints of a cluster job (POST, GET and DELETE
// /v1/jobs/{name}/savepoints).
func newCtlSavepointCmd(o *ctlOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "savepoint",
		Short: "Create, list and delete the savepoints of a cluster job (kept until deleted; eddy ctl job submit --from-savepoint starts a job from one)",
		Args:  cobra.NoArgs,
	}
	var wait time.Duration
	var stop bool
	create := &cobra.Command{
		Use:   "create JOB [--wait 2m] [--cancel]",
		Short: "Take a savepoint of JOB: a checkpoint of every partition that retention and garbage collection keep until it is deleted",
		Long: `The Raft leader's coordinator sends every partition of JOB a checkpoint
barrier marked as a savepoint; the command answers once every partition has
acknowledged it (its offset and state snapshot in checkpoint storage), or
fails when it was aborted or is not complete within --wait (it is then
aborted). The job must have checkpoint.storage set. --cancel stops the job
with the savepoint: Raft cancels it together with the ack that completes
the savepoint (an aborted savepoint leaves it running).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if wait <= 0 || wait > control.MaxSavepointTimeout {
				return fmt.Errorf("--wait %v: want a duration in (0, %v]", wait, control.MaxSavepointTimeout)
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			sp, err := c.Savepoint(cmd.Context(), args[0], client.SavepointOptions{Timeout: wait, Cancel: stop})
			if err != nil {
				return err
			}
			if o.json() {
				return printJSON(cmd.OutOrStdout(), sp)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "savepoint %d of job %s complete (%d partitions)\n", sp.ID, sp.Job, sp.Partitions)
			if sp.CancelJob {
				fmt.Fprintf(cmd.OutOrStdout(), "job %s cancelled with it\n", sp.Job)
			}
			return nil
		},
	}
	create.Flags().BoolVar(&stop, "cancel", false, "stop with savepoint: cancel the job when the savepoint completes")
	create.Flags().DurationVar(&wait, "wait", control.DefaultSavepointTimeout, "how long to wait for every partition's acknowledgement")
	list := &cobra.Command{
		Use:   "list JOB",
		Short: "List the savepoints of JOB (of a cancelled job too): id, time, state, per-partition offsets",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			sps, err := c.Savepoints(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if o.json() {
				return printJSON(cmd.OutOrStdout(), sps)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "JOB\tID\tSTARTED\tACKED\tSTATE\tOFFSETS (partition:offset)")
			for _, sp := range sps {
				started := "-"
				if sp.StartedMs > 0 {
					started = time.UnixMilli(sp.StartedMs).UTC().Format("2006-01-02 15:04:05")
				}
				offs := ""
				for i, a := range sp.Acks {
					if i > 0 {
						offs += " "
					}
					offs += strconv.Itoa(int(a.Partition)) + ":" + strconv.FormatInt(a.Offset, 10)
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%d/%d\t%s\t%s\n", sp.Job, sp.ID, started, len(sp.Acks), sp.Partitions, checkpointState(sp), offs)
			}
			return tw.Flush()
		},
	}
	del := &cobra.Command{
		Use:   "delete JOB ID",
		Short: "Delete savepoint ID of JOB; the leader then deletes its snapshots from checkpoint storage",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := strconv.ParseUint(args[1], 10, 64)
			if err != nil || id == 0 {
				return fmt.Errorf("savepoint id %q: want a positive integer (see eddy ctl savepoint list %s)", args[1], args[0])
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			if err := c.DeleteSavepoint(cmd.Context(), args[0], id); err != nil {
				return err
			}
			if o.json() {
				return printJSON(cmd.OutOrStdout(), map[string]any{"job": args[0], "id": id, "deleted": true})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "savepoint %d of job %s deleted\n", id, args[0])
			return nil
		},
	}
	cmd.AddCommand(create, list, del)
	return cmd
}
