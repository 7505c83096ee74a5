package directory

// live is the directory in force: d itself, or the one the last Replace
// swapped in. Snapshots and writes go through it.
func (d *Directory) live() *Directory {
	if n := d.swapped.Load(); n != nil {
		return n
	}
	return d
}

// Replace puts a directory built from a new configuration in force in one
// step (a config reload, O5): snapshots taken before keep the old view,
// snapshots taken after see only the new one, never a mix. Writes (AddStore,
// AddReplica, SetSynced) wait for Replace and then go to the new one. from
// must be a fresh directory that nothing else writes to afterwards.
func (d *Directory) Replace(from *Directory) {
	d.writeMu.Lock()
	defer d.writeMu.Unlock()
	from = from.live()
	if from == d {
		return
	}
	d.swapped.Store(from)
}
