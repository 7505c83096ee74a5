package admin

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"pfrouter/replication"
)

// ReplicaStatus reads the live status of every replica of a folder
// (hierarchy may be empty when the path is in one hierarchy only).
func (c *Client) ReplicaStatus(ctx context.Context, hierarchy, folder string) (replication.FolderStatus, error) {
	var st replication.FolderStatus
	q := url.Values{"folder": {folder}}
	if hierarchy != "" {
		q.Set("hierarchy", hierarchy)
	}
	err := c.do(ctx, http.MethodGet, "/v1/replication?"+q.Encode(), nil, &st)
	return st, err
}

// UnsyncedReplicas lists the folders whose replicas are not in sync.
func (c *Client) UnsyncedReplicas(ctx context.Context) ([]replication.FolderStatus, error) {
	var out struct {
		NotInSync []replication.FolderStatus `json:"not_in_sync"`
	}
	err := c.do(ctx, http.MethodGet, "/v1/replication", nil, &out)
	return out.NotInSync, err
}

// replicaStatusCmd is `pfrouter admin replica status [--folder F]`.
func (c *cli) replicaStatusCmd() *cobra.Command {
	var hierarchy, folder string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show whether a folder's replicas hold the same changes (without --folder: the folders not in sync)",
		Args:  cobra.NoArgs,
		RunE: c.run(func(ctx context.Context, cl *Client, out io.Writer, _ []string) error {
			if folder == "" {
				list, err := cl.UnsyncedReplicas(ctx)
				if err != nil {
					return classify(err)
				}
				return c.emit(out, map[string]any{"not_in_sync": list}, func() {
					if len(list) == 0 {
						fmt.Fprintln(out, "every replicated folder is in sync")
						return
					}
					for i, st := range list {
						if i > 0 {
							fmt.Fprintln(out)
						}
						printFolderStatus(out, st)
					}
				})
			}
			st, err := cl.ReplicaStatus(ctx, hierarchy, folder)
			if err != nil {
				return classify(err)
			}
			return c.emit(out, st, func() { printFolderStatus(out, st) })
		}),
	}
	cmd.Flags().StringVar(&folder, "folder", "", "folder path, e.g. /Sales")
	cmd.Flags().StringVar(&hierarchy, "hierarchy", "", "hierarchy name (needed only when the path is in several)")
	return cmd
}

func printFolderStatus(out io.Writer, st replication.FolderStatus) {
	state := "in sync"
	if !st.InSync {
		state = "NOT in sync"
	}
	fmt.Fprintf(out, "%s (hierarchy %s): %s\n", st.Folder, st.Hierarchy, state)
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STORE\tSERVER\tMESSAGES\tIN_SYNC\tBEHIND\tCN SET")
	for _, r := range st.Replicas {
		if r.Error != "" {
			fmt.Fprintf(tw, "%s\t%s\t-\tunknown\t-\t%s\n", r.Store, r.Server, r.Error)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%v\t%d\t%s\n", r.Store, r.Server, r.Messages, r.InSync, r.Behind, r.CNSet)
	}
	tw.Flush()
}
